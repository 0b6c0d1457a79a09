//! The limit on open files: the soft limit (often 1,024) is raised to the hard one at start, so
//! that a flood of connections meets the server's own connection cap, which answers it, instead
//! of `EMFILE` at accept, which answers nothing.

/// Raises the soft limit to the hard one; returns the soft limit in force afterwards (`None`
/// where the platform has none to tell).
#[cfg(unix)]
pub fn raise() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (now.current, now.maximum) {
        if soft < hard {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(soft, hard, error = %e, "cannot raise the limit on open files");
            }
        }
    }
    current()
}

#[cfg(not(unix))]
pub fn raise() -> Option<u64> {
    None
}

/// The soft limit on open files; `None` when unlimited or unknown.
#[cfg(unix)]
pub fn current() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
pub fn current() -> Option<u64> {
    None
}
