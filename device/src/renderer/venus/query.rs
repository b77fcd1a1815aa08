//! Query pools: creation, host reset, results, and the query commands.

use ash::vk;
use vulkan_proto::args::{
    CmdBeginQueryArgs, CmdCopyQueryPoolResultsArgs, CmdEndQueryArgs, CmdResetQueryPoolArgs,
    CmdWriteTimestamp2Args, CmdWriteTimestampArgs, CreateQueryPoolArgs, DestroyQueryPoolArgs,
    GetQueryPoolResultsArgs, ResetQueryPoolArgs,
};

use super::physical_device::required;
use super::{Handler, Result, VenusError};

impl Handler<'_, '_> {
    pub(super) fn create_query_pool(
        &mut self,
        args: &mut CreateQueryPoolArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        // SAFETY: live device; `info` lives in the arena.
        self.create_child(args.device, args.p_query_pool.as_deref(), |d| unsafe {
            d.device.create_query_pool(info, None)
        })
    }

    pub(super) fn destroy_query_pool(&mut self, args: &mut DestroyQueryPoolArgs<'_>) -> Result<()> {
        // SAFETY: a live query pool of this device, now out of the tables.
        self.destroy_child(args.device, args.query_pool, |d, h| unsafe {
            d.device.destroy_query_pool(h, None);
        })
    }

    pub(super) fn get_query_pool_results(
        &mut self,
        args: &mut GetQueryPoolResultsArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let data = required(args.p_data.as_deref_mut(), "pData")?;
        if data.len() != args.data_size {
            return Err(VenusError::Invalid("pData length differs from dataSize"));
        }
        // The driver writes queryCount results `stride` apart; make sure they fit.
        let elem: u64 = if args.flags.contains(vk::QueryResultFlags::TYPE_64) {
            8
        } else {
            4
        };
        let needed = u64::from(args.query_count)
            .checked_sub(1)
            .map_or(Some(0), |n| n.checked_mul(args.stride))
            .and_then(|n| n.checked_add(elem * 2))
            .ok_or(VenusError::Invalid("query results overflow"))?;
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
        // SAFETY: live device and pool.
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
        // SAFETY: live command buffer and pool.
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
        // SAFETY: live command buffer and pool.
        unsafe {
            dev.device
                .cmd_begin_query(args.command_buffer, args.query_pool, args.query, args.flags)
        };
        Ok(())
    }

    pub(super) fn cmd_end_query(&mut self, args: &mut CmdEndQueryArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        // SAFETY: live command buffer and pool.
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
        // SAFETY: live command buffer and pool.
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
        // SAFETY: live command buffer and pool.
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
        // SAFETY: live command buffer, pool and buffer.
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
