//! The API edge: every request is first named as an [`Endpoint`] from its method and path alone,
//! then authenticated and authorized for what that endpoint needs ([`authorize`]) before any
//! handler runs. One table decides who may do what, instead of each handler deciding.

mod authorize;
pub mod endpoint;

pub use authorize::authorize;
pub use endpoint::{Access, Endpoint};
