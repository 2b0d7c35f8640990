//! The error type of members.

/// The error type members return, once boxed: anything that converts into
/// it (`std::io::Error`, `String`, `&str`, your own error types) can be a
/// member's error.
///
/// ```
/// let error: allstop::BoxError = std::io::Error::other("disk full").into();
/// assert_eq!(error.to_string(), "disk full");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
