//! Instance commands: version, creation (extensions and layers the host lacks are
//! stripped), destruction.

use std::ffi::CStr;
use std::sync::Arc;

use ash::vk;
use vulkan_proto::args::{
    CreateInstanceArgs, DestroyInstanceArgs, EnumerateInstanceExtensionPropertiesArgs,
    EnumerateInstanceLayerPropertiesArgs, EnumerateInstanceVersionArgs,
};
use vulkan_proto::info;

use super::objects::InstanceState;
use super::{raw, Handler, Limit, Result, VenusError};

/// Copies `items` into a guest count/array pair (the two-call enumerate idiom).
pub(super) fn fill_array<T: Copy>(
    count: &mut u32,
    out: Option<&mut [T]>,
    items: &[T],
) -> vk::Result {
    match out {
        None => {
            *count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            vk::Result::SUCCESS
        }
        Some(out) => {
            let n = out.len().min(*count as usize).min(items.len());
            out[..n].copy_from_slice(&items[..n]);
            *count = u32::try_from(n).unwrap_or(u32::MAX);
            if n < items.len() {
                vk::Result::INCOMPLETE
            } else {
                vk::Result::SUCCESS
            }
        }
    }
}

/// The highest API version the protocol can carry.
pub(super) fn cap_api_version(v: u32) -> u32 {
    v.min(info::VK_XML_VERSION)
}

/// The lowest API version a host instance is created with: the handlers call Vulkan
/// 1.1 entry points (`vkGetDeviceQueue2`, `vkGetPhysicalDeviceProperties2`, …) on
/// every device, and the loader leaves them NULL on a 1.0 instance (calling one was a
/// SIGSEGV in the daemon).
pub(super) const MIN_HOST_API_VERSION: u32 = vk::API_VERSION_1_1;

/// The highest API version a host instance is asked for: the newest `ash`'s core tables
/// (`fp_v1_3`) and the protocol (vk.xml 1.3) know.
pub(super) const MAX_HOST_API_VERSION: u32 = vk::API_VERSION_1_3;

/// The `apiVersion` a host instance is created with for the guest's `requested` (0:
/// none given, i.e. 1.0), where the host loader supports `host` (its
/// `vkEnumerateInstanceVersion`): the highest the host and the protocol both support,
/// so the 1.2 and 1.3 entry points the handlers call through `ash`'s core tables exist
/// whatever the guest asked for (a guest asking 1.0 still only uses what 1.0 has;
/// Mesa's Venus driver itself raises its renderer instance to 1.1), and never below
/// [`MIN_HOST_API_VERSION`] or what the guest asked. A version with a variant or below
/// 1.0 is refused: no Vulkan implementation has one.
pub(super) fn host_api_version(requested: u32, host: u32) -> Result<u32> {
    let floor = strip_patch(host.min(MAX_HOST_API_VERSION)).max(MIN_HOST_API_VERSION);
    if requested == 0 {
        return Ok(floor);
    }
    if vk::api_version_variant(requested) != 0 {
        return Err(VenusError::Invalid("apiVersion has a non-zero variant"));
    }
    if vk::api_version_major(requested) == 0 {
        return Err(VenusError::Invalid("apiVersion is below 1.0"));
    }
    Ok(requested.max(floor))
}

/// `v` without its patch number.
fn strip_patch(v: u32) -> u32 {
    vk::make_api_version(
        vk::api_version_variant(v),
        vk::api_version_major(v),
        vk::api_version_minor(v),
        0,
    )
}

impl Handler<'_, '_> {
    pub(super) fn entry(&self) -> Result<Arc<ash::Entry>> {
        let mut state = self.lock();
        if let Some(e) = &state.entry {
            return Ok(Arc::clone(e));
        }
        // SAFETY: loading the system Vulkan loader runs its initialisers; the loader
        // is a well-behaved library and the returned Entry keeps it loaded.
        let entry = Arc::new(unsafe { ash::Entry::load() }.map_err(VenusError::Loader)?);
        state.entry = Some(Arc::clone(&entry));
        Ok(entry)
    }

    pub(super) fn enumerate_instance_version(
        &mut self,
        args: &mut EnumerateInstanceVersionArgs<'_>,
    ) -> Result<vk::Result> {
        let out = args.p_api_version.as_deref_mut().ok_or(VenusError::Null {
            what: "pApiVersion",
        })?;
        let entry = self.entry()?;
        // SAFETY: a global command with no preconditions.
        match unsafe { entry.try_enumerate_instance_version() } {
            Ok(v) => {
                *out = cap_api_version(v.unwrap_or(vk::API_VERSION_1_0));
                Ok(vk::Result::SUCCESS)
            }
            Err(e) => Ok(e),
        }
    }

    pub(super) fn enumerate_instance_extension_properties(
        &mut self,
        args: &mut EnumerateInstanceExtensionPropertiesArgs<'_>,
    ) -> Result<vk::Result> {
        let count = args
            .p_property_count
            .as_deref_mut()
            .ok_or(VenusError::Null {
                what: "pPropertyCount",
            })?;
        if args.p_layer_name.is_some() {
            *count = 0;
            return Ok(vk::Result::ERROR_LAYER_NOT_PRESENT);
        }
        let entry = self.entry()?;
        // SAFETY: a global command with no preconditions.
        let host = match unsafe { entry.enumerate_instance_extension_properties(None) } {
            Ok(v) => v,
            Err(e) => return Ok(e),
        };
        let filtered = filter_extensions(&host);
        Ok(fill_array(
            count,
            args.p_properties.as_deref_mut(),
            &filtered,
        ))
    }

    pub(super) fn enumerate_instance_layer_properties(
        &mut self,
        args: &mut EnumerateInstanceLayerPropertiesArgs<'_>,
    ) -> Result<vk::Result> {
        let count = args
            .p_property_count
            .as_deref_mut()
            .ok_or(VenusError::Null {
                what: "pPropertyCount",
            })?;
        // Host layers are never exposed to guests.
        *count = 0;
        Ok(vk::Result::SUCCESS)
    }

    pub(super) fn create_instance(
        &mut self,
        args: &mut CreateInstanceArgs<'_>,
    ) -> Result<vk::Result> {
        let id = self.new_id(args.p_instance.as_deref())?;
        let max = self.exec.account.limits().max_instances as usize;
        if self.lock().instance_count() >= max {
            return Err(self.limit_reached(Limit::Instances));
        }
        let guest = args.p_create_info.ok_or(VenusError::Null {
            what: "pCreateInfo",
        })?;
        let entry = self.entry()?;
        // SAFETY: a global command with no preconditions.
        let host_exts = match unsafe { entry.enumerate_instance_extension_properties(None) } {
            Ok(v) => v,
            Err(e) => return Ok(e),
        };
        // SAFETY: the names array was decoded into this command's arena with this count.
        let wanted = unsafe {
            raw::cstr_array(
                guest.pp_enabled_extension_names,
                guest.enabled_extension_count,
            )
        };
        let names: Vec<*const std::ffi::c_char> = wanted
            .into_iter()
            .filter(|n| has_extension(&host_exts, n))
            .map(CStr::as_ptr)
            .collect();
        let mut app = if guest.p_application_info.is_null() {
            vk::ApplicationInfo::default()
        } else {
            // SAFETY: non-NULL, so decoded into this command's arena, which outlives
            // this copy.
            unsafe { *guest.p_application_info }
        };
        // SAFETY: a global command with no preconditions.
        let host_version = unsafe { entry.try_enumerate_instance_version() }
            .ok()
            .flatten()
            .unwrap_or(vk::API_VERSION_1_0);
        app.api_version = host_api_version(app.api_version, host_version)?;
        let mut info = *guest;
        info.p_application_info = &app;
        info.enabled_layer_count = 0;
        info.pp_enabled_layer_names = std::ptr::null();
        info.enabled_extension_count = u32::try_from(names.len()).unwrap_or(0);
        info.pp_enabled_extension_names = names.as_ptr();
        // SAFETY: `info` and everything it points to (`app`, whose names and chain are
        // the guest's in the arena, the guest's pNext chain, `names`) live across the
        // call; no allocator.
        let instance = match unsafe { entry.create_instance(&info, None) } {
            Ok(i) => i,
            Err(e) => return Ok(e),
        };
        let raw = vk::Handle::as_raw(instance.handle());
        let state = Arc::new(InstanceState {
            _entry: entry,
            instance,
            api_version: app.api_version,
        });
        let mut st = self.lock();
        // Checked again under the lock: another stream may have created one meanwhile.
        let bound = if st.instance_count() >= max {
            Err(self.limit_reached(Limit::Instances))
        } else {
            st.bind(id, vk::ObjectType::INSTANCE, raw, 0)
        };
        if let Err(e) = bound {
            drop(st);
            // The only reference: dropping it destroys the instance nothing else knows.
            drop(state);
            return Err(e);
        }
        st.add_instance(raw, state);
        Ok(vk::Result::SUCCESS)
    }

    pub(super) fn destroy_instance(&mut self, args: &mut DestroyInstanceArgs<'_>) -> Result<()> {
        let raw = vk::Handle::as_raw(args.instance);
        if raw == 0 {
            return Ok(());
        }
        let inst = self
            .lock()
            .remove_instance(raw)
            .ok_or(VenusError::NoState {
                ty: vk::ObjectType::INSTANCE,
                raw,
            })?;
        // Out of the tables, so no later command reaches it; the host instance is
        // destroyed when its last device (each holds a reference) is gone, here if the
        // guest destroyed them first as valid usage requires.
        drop(inst);
        Ok(())
    }
}

pub(super) fn has_extension(list: &[vk::ExtensionProperties], name: &CStr) -> bool {
    list.iter()
        .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name))
}

/// Host extensions the protocol knows, spec versions capped to the protocol's.
pub(super) fn filter_extensions(host: &[vk::ExtensionProperties]) -> Vec<vk::ExtensionProperties> {
    host.iter()
        .filter_map(|e| {
            let name = e.extension_name_as_c_str().ok()?.to_str().ok()?;
            let known = info::extension(name)?;
            let mut out = *e;
            out.spec_version = out.spec_version.min(known.spec_version);
            Some(out)
        })
        .collect()
}

/// The loader and host driver loaded by [`preload_host_driver`], kept for the life
/// of the process.
static PRELOADED: std::sync::OnceLock<ash::Entry> = std::sync::OnceLock::new();

/// Loads the Vulkan loader and makes it read the host driver's manifest and load
/// the driver once (`vkEnumerateInstanceExtensionProperties`), as a worker process
/// does before it is sandboxed. Returns the number of instance extensions.
pub fn preload_host_driver() -> std::result::Result<usize, VenusError> {
    let entry = match PRELOADED.get() {
        Some(e) => e,
        None => {
            // SAFETY: as in `Handler::entry`: loading the system Vulkan loader runs
            // its initialisers; the Entry is kept in a static, so the loader stays.
            let e = unsafe { ash::Entry::load() }.map_err(VenusError::Loader)?;
            PRELOADED.get_or_init(|| e)
        }
    };
    // SAFETY: a global command with no preconditions.
    let exts = unsafe { entry.enumerate_instance_extension_properties(None) }
        .map_err(|_| VenusError::Invalid("vkEnumerateInstanceExtensionProperties failed"))?;
    Ok(exts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_instances_are_created_at_the_highest_version_host_and_protocol_share() {
        let v = |minor, patch| vk::make_api_version(0, 1, minor, patch);
        let on = |host: u32| -> Vec<u32> {
            [0, vk::API_VERSION_1_0, vk::API_VERSION_1_2, v(3, 7)]
                .into_iter()
                .map(|r| host_api_version(r, host).expect("a valid apiVersion"))
                .collect()
        };
        // A 1.4 loader: 1.3 (what ash and the protocol know), or what the guest asked.
        assert_eq!(on(v(4, 303)), [v(3, 0), v(3, 0), v(3, 0), v(3, 7)]);
        // A 1.2 loader: 1.2; a 1.0 loader: still 1.1 (the handlers need it).
        assert_eq!(on(v(2, 198)), [v(2, 0), v(2, 0), v(2, 0), v(3, 7)]);
        assert_eq!(
            on(vk::API_VERSION_1_0),
            [v(1, 0), v(1, 0), v(2, 0), v(3, 7)]
        );
    }

    #[test]
    fn api_versions_below_1_0_or_with_a_variant_are_refused() {
        let below = host_api_version(vk::make_api_version(0, 0, 9, 0), vk::API_VERSION_1_3);
        let variant = host_api_version(vk::make_api_version(1, 1, 3, 0), vk::API_VERSION_1_3);
        assert!(matches!(below, Err(VenusError::Invalid(_))));
        assert!(matches!(variant, Err(VenusError::Invalid(_))));
    }
}
