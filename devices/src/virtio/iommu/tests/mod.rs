//! Device-level tests: requests and events travel through real split virtqueues in guest
//! memory, as a driver would send them.

use super::driver_harness as rig;

mod answers;
mod eventq;
mod fuzz;
mod host;
mod isolation;
mod nested_protocol;
mod page_requests;
mod requests;
mod table_mode;
mod translation;
mod worker;
