//! The IOMMU's side of the responses: each PRI_RESP the SMMU executes goes to the device
//! with that StreamID.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::PageResponses;
use crate::host_iommu::smmuv3::{DeviceEffect, DeviceNotifier, PriResponse};

/// The SMMU's device notifier: PRG Responses to the devices that asked.
#[derive(Debug, Default)]
pub struct PageResponseRouter {
    devices: Mutex<HashMap<u32, Arc<PageResponses>>>,
}

impl PageResponseRouter {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The responses for the device with StreamID `stream`.
    pub fn attach(&self, stream: u32) -> Arc<PageResponses> {
        self.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(stream)
            .or_default()
            .clone()
    }
}

impl DeviceNotifier for PageResponseRouter {
    fn notify(&self, effect: DeviceEffect) {
        let DeviceEffect::PageResponse {
            sid,
            ssid,
            group,
            response,
        } = effect
        else {
            return;
        };
        let device = self
            .devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sid)
            .cloned();
        if let Some(device) = device {
            device.respond(ssid, group, response == PriResponse::Success);
        }
    }
}
