//! Query pools: creation, host reset, results, and the query commands.

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    CmdBeginQueryArgs, CmdCopyQueryPoolResultsArgs, CmdEndQueryArgs, CmdResetQueryPoolArgs,
    CmdWriteTimestamp2Args, CmdWriteTimestampArgs, CreateQueryPoolArgs, GetQueryPoolResultsArgs,
    ResetQueryPoolArgs,
};

use super::physical_device::required;
use super::{Handler, Result, VenusError};

impl Handler<'_, '_> {
    pub(super) fn create_query_pool(
        &mut self,
        args: &mut CreateQueryPoolArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_query_pool.as_deref())?;
        let values = match info.query_type {
            vk::QueryType::PIPELINE_STATISTICS => {
                u64::from(info.pipeline_statistics.as_raw().count_ones())
            }
            vk::QueryType::TRANSFORM_FEEDBACK_STREAM_EXT => 2,
            _ => 1,
        };
        // SAFETY: live device; `info` lives in the arena.
        let r = self.create_child(args.device, args.p_query_pool.as_deref(), |d| unsafe {
            d.device.create_query_pool(info, None)
        })?;
        self.lock()
            .set_query_pool_info(id, info.query_count, values);
        Ok(r)
    }

    /// Checks `first + count` queries inside `pool` (and the pool's device); returns
    /// the values each query has.
    pub(super) fn check_queries(
        &self,
        dev: &super::DeviceState,
        pool: vk::QueryPool,
        first: u32,
        count: u32,
    ) -> Result<u64> {
        self.check_owned(dev, &[(vk::ObjectType::QUERY_POOL, pool.as_raw())])?;
        let (size, values) = self
            .lock()
            .query_pool_info(pool.as_raw())
            .ok_or(VenusError::Invalid("unknown query pool"))?;
        if u64::from(first) + u64::from(count) > u64::from(size) {
            return Err(VenusError::Invalid("queries outside the pool"));
        }
        Ok(values)
    }

    pub(super) fn get_query_pool_results(
        &mut self,
        args: &mut GetQueryPoolResultsArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let values =
            self.check_queries(&dev, args.query_pool, args.first_query, args.query_count)?;
        let data = required(args.p_data.as_deref_mut(), "pData")?;
        if data.len() != args.data_size {
            return Err(VenusError::Invalid("pData length differs from dataSize"));
        }
        // The driver writes queryCount results `stride` apart; make sure they fit.
        let needed = result_span(args.query_count, args.stride, values, args.flags)?;
        if args.query_count > 0 && needed > data.len() as u64 {
            return Err(VenusError::Invalid("query results do not fit pData"));
        }
        // SAFETY: live device and pool; `data` holds dataSize bytes, which covers every
        // result (value plus availability) at the given stride, checked above.
        Ok(unsafe {
            (dev.device.fp_v1_0().get_query_pool_results)(
                dev.device.handle(),
                args.query_pool,
                args.first_query,
                args.query_count,
                data.len(),
                data.as_mut_ptr().cast(),
                args.stride,
                args.flags,
            )
        })
    }

    pub(super) fn reset_query_pool(&mut self, args: &mut ResetQueryPoolArgs<'_>) -> Result<()> {
        let dev = self.device(args.device)?;
        self.check_queries(&dev, args.query_pool, args.first_query, args.query_count)?;
        // SAFETY: live device and pool; the queries lie inside it.
        unsafe {
            dev.device
                .reset_query_pool(args.query_pool, args.first_query, args.query_count)
        };
        Ok(())
    }

    pub(super) fn cmd_reset_query_pool(
        &mut self,
        args: &mut CmdResetQueryPoolArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_queries(&dev, args.query_pool, args.first_query, args.query_count)?;
        // SAFETY: live command buffer and pool; the queries lie inside it.
        unsafe {
            dev.device.cmd_reset_query_pool(
                args.command_buffer,
                args.query_pool,
                args.first_query,
                args.query_count,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_begin_query(&mut self, args: &mut CmdBeginQueryArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_queries(&dev, args.query_pool, args.query, 1)?;
        // SAFETY: live command buffer and pool; the query lies inside it.
        unsafe {
            dev.device
                .cmd_begin_query(args.command_buffer, args.query_pool, args.query, args.flags)
        };
        Ok(())
    }

    pub(super) fn cmd_end_query(&mut self, args: &mut CmdEndQueryArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_queries(&dev, args.query_pool, args.query, 1)?;
        // SAFETY: live command buffer and pool; the query lies inside it.
        unsafe {
            dev.device
                .cmd_end_query(args.command_buffer, args.query_pool, args.query)
        };
        Ok(())
    }

    pub(super) fn cmd_write_timestamp(
        &mut self,
        args: &mut CmdWriteTimestampArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_queries(&dev, args.query_pool, args.query, 1)?;
        // SAFETY: live command buffer and pool; the query lies inside it.
        unsafe {
            dev.device.cmd_write_timestamp(
                args.command_buffer,
                args.pipeline_stage,
                args.query_pool,
                args.query,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_write_timestamp2(
        &mut self,
        args: &mut CmdWriteTimestamp2Args<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_queries(&dev, args.query_pool, args.query, 1)?;
        // SAFETY: live command buffer and pool; the query lies inside it.
        unsafe {
            dev.device.cmd_write_timestamp2(
                args.command_buffer,
                args.stage,
                args.query_pool,
                args.query,
            )
        };
        Ok(())
    }

    pub(super) fn cmd_copy_query_pool_results(
        &mut self,
        args: &mut CmdCopyQueryPoolResultsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let values =
            self.check_queries(&dev, args.query_pool, args.first_query, args.query_count)?;
        self.check_owned(&dev, &[(vk::ObjectType::BUFFER, args.dst_buffer.as_raw())])?;
        if args.query_count > 0 {
            let span = result_span(args.query_count, args.stride, values, args.flags)?;
            self.check_buffer_bytes(args.dst_buffer, args.dst_offset, span)?;
        }
        // SAFETY: live command buffer, pool and buffer; queries inside the pool and
        // results inside the buffer.
        unsafe {
            dev.device.cmd_copy_query_pool_results(
                args.command_buffer,
                args.query_pool,
                args.first_query,
                args.query_count,
                args.dst_buffer,
                args.dst_offset,
                args.stride,
                args.flags,
            );
        }
        Ok(())
    }
}

/// Bytes `count` query results take `stride` apart, each `values` values (plus
/// availability or status when asked) of 4 or 8 bytes.
fn result_span(count: u32, stride: u64, values: u64, flags: vk::QueryResultFlags) -> Result<u64> {
    let elem: u64 = if flags.contains(vk::QueryResultFlags::TYPE_64) {
        8
    } else {
        4
    };
    let extra = u64::from(flags.intersects(
        vk::QueryResultFlags::WITH_AVAILABILITY | vk::QueryResultFlags::WITH_STATUS_KHR,
    ));
    let one = values
        .checked_add(extra)
        .and_then(|v| v.checked_mul(elem))
        .ok_or(VenusError::Invalid("query results overflow"))?;
    u64::from(count)
        .checked_sub(1)
        .map_or(Some(0), |n| n.checked_mul(stride))
        .and_then(|n| n.checked_add(one))
        .ok_or(VenusError::Invalid("query results overflow"))
}
