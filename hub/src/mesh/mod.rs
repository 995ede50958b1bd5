//! MESH: the API client, and the inbox poller that turns ITK3 responses and MESH reports into
//! delivery states. The transport that sends is `deliver::mesh`.

pub mod client;
pub mod poll;
