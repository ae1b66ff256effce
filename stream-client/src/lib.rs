pub use range_server::client::*;
