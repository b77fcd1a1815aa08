//! Ownership of every handle argument, checked once per command for all commands.
//!
//! Every handle a command names reaches the executor through one choke point: the
//! decoder translates each guest id with [`super::Handler`]'s `HandleMap::lookup`, which
//! records `(type, host handle)`. Between decoding and the handler, the generated
//! dispatcher calls `Dispatch::decoded`, and [`Handler::check_one_device`] holds every
//! recorded handle against the device the command is dispatched on (its first handle: a
//! `VkDevice`, or the device of a `VkQueue` or `VkCommandBuffer`). Vulkan requires each
//! of them to come from that device; the host driver trusts that it does, so a handle
//! of another device of the same context is refused here, for every command alike,
//! including handles nested in structures and arrays. (Handles of another context
//! cannot be named at all: guest ids are looked up in the calling context's table only.)

use ash::vk;
use ash::vk::Handle as _;
use vulkan_proto::CommandType;

use super::fns::core_only_since;

use super::{Handler, Result, VenusError};

/// Refuses a NULL handle where every one given must be a live object (a parameter
/// vk.xml does not mark optional, or an element of a handle array). The decoder passes
/// object id 0 through as VK_NULL_HANDLE, which is right where NULL is allowed, and
/// drivers dereference it where it is not: lavapipe SIGSEGVs on a NULL command buffer
/// or semaphore in `vkQueueSubmit`, or a NULL fence or event in the host-side
/// fence/event commands (found by the `exec_sequences` fuzz target). The generated
/// forwards call it for every such parameter; hand-written handlers where they need it.
pub(super) fn no_null<H: vk::Handle + Copy>(handles: &[H], what: &'static str) -> Result<()> {
    if handles.iter().any(|h| h.as_raw() == 0) {
        return Err(VenusError::Invalid(what));
    }
    Ok(())
}

impl Handler<'_, '_> {
    /// Checks that every handle this command's decoding translated belongs to the
    /// device the command is dispatched on. Instance-level commands (dispatched on an
    /// instance or physical device) and commands without handles pass.
    pub(super) fn check_one_device(&self) -> Result<()> {
        let seen = self.looked_up.borrow();
        let Some((&(ty0, raw0), rest)) = seen.split_first() else {
            return Ok(());
        };
        if rest.is_empty() {
            return Ok(());
        }
        let st = self.lock();
        let device = match ty0 {
            vk::ObjectType::DEVICE => raw0,
            vk::ObjectType::QUEUE | vk::ObjectType::COMMAND_BUFFER => st
                .owner_device(ty0, raw0)
                .ok_or(VenusError::ForeignHandle(ty0))?,
            _ => return Ok(()),
        };
        for &(ty, raw) in rest {
            let owner = match ty {
                // Instance-level objects have no device; Vulkan never passes one to a
                // device-level command that reaches the host (no swapchains are forwarded).
                vk::ObjectType::INSTANCE | vk::ObjectType::PHYSICAL_DEVICE => continue,
                vk::ObjectType::DEVICE => Some(raw),
                _ => st.owner_device(ty, raw),
            };
            if owner != Some(device) {
                return Err(VenusError::ForeignHandle(ty));
            }
        }
        Ok(())
    }
}

impl Handler<'_, '_> {
    /// Refuses a command that is core only since Vulkan 1.2 or 1.3 (and reached through
    /// `ash`'s core tables, [`core_only_since`]) when the object it is dispatched on (its
    /// first handle) has a lower core version: the loader gives no entry point there,
    /// and `ash`'s stub in its place panics (found by the executor fuzz target:
    /// `vkWaitSemaphores` on a device of a 1.1 instance). Host instances are created at
    /// the highest version the host supports (`instance::host_api_version`), so only a
    /// host whose physical device is older than the command meets this.
    pub(super) fn check_core_version(&self, command: CommandType) -> Result<()> {
        let Some(minor) = core_only_since(command) else {
            return Ok(());
        };
        let Some(&(ty, raw)) = self.looked_up.borrow().first() else {
            return Ok(());
        };
        let st = self.lock();
        let version = match ty {
            vk::ObjectType::DEVICE => st.device(vk::Device::from_raw(raw))?.api_version,
            vk::ObjectType::QUEUE | vk::ObjectType::COMMAND_BUFFER => {
                st.device_of(ty, raw)?.api_version
            }
            vk::ObjectType::PHYSICAL_DEVICE => {
                st.physical(vk::PhysicalDevice::from_raw(raw))?.api_version
            }
            vk::ObjectType::INSTANCE => st.instance(vk::Instance::from_raw(raw))?.api_version,
            _ => return Ok(()),
        };
        if vk::api_version_major(version) == 1 && vk::api_version_minor(version) < minor {
            return Err(VenusError::HostLacks(
                command
                    .name()
                    .unwrap_or("a command of a newer core version"),
            ));
        }
        Ok(())
    }
}
