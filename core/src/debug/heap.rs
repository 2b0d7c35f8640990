//! Heap profiles from jemalloc's profiler, converted to pprof by
//! `jemalloc_pprof`: what the application must do, and the dump itself,
//! taken off the async threads.

/// Why there is no heap profile to give.
#[derive(Debug)]
pub(crate) enum HeapError {
    /// Heap profiling is not on in this process (501, with how to turn it
    /// on).
    NotActive(&'static str),
    /// jemalloc could not dump or convert the profile (500).
    #[cfg_attr(not(all(feature = "heap", target_os = "linux")), allow(dead_code))]
    Failed(String),
}

/// How an application turns heap profiles on.
pub(crate) const HOW_TO: &str = "heap profiles come from jemalloc's profiler: \
build with allstop's `heap` feature (Linux), add tikv-jemallocator with its `profiling` \
feature, and add two items to the program's main file:

    #[global_allocator]
    static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    #[export_name = \"_rjem_malloc_conf\"]
    pub static MALLOC_CONF: &[u8] = b\"prof:true,prof_active:true,lg_prof_sample:19\\0\";

(with tikv-jemallocator's `unprefixed_malloc_on_supported_platforms` feature the \
symbol is `malloc_conf`). Then `go tool pprof http://HOST/debug/pprof/heap`.
";

/// A heap profile as a gzip-compressed pprof protobuf; with `head_only`,
/// whether there would be one, without taking it.
#[cfg(all(feature = "heap", target_os = "linux"))]
pub(crate) async fn profile(head_only: bool) -> Result<Vec<u8>, HeapError> {
    let Some(control) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Err(HeapError::NotActive(
            "heap profiling is off: jemalloc is not the allocator, or runs without `prof:true`",
        ));
    };
    if head_only {
        return Ok(Vec::new());
    }
    let control = control.clone();
    let (done, result) = futures::channel::oneshot::channel();
    // Dumping writes and parses a file: not on an async thread.
    std::thread::Builder::new()
        .name("allstop-heap-profile".into())
        .spawn(move || {
            let mut control = control.blocking_lock();
            let result = if control.activated() {
                control.dump_pprof().map_err(|error| {
                    HeapError::Failed(format!("cannot dump the heap profile: {error}"))
                })
            } else {
                Err(HeapError::NotActive(
                    "heap profiling is not active: jemalloc runs with `prof_active:false`",
                ))
            };
            let _ = done.send(result);
        })
        .map_err(|error| {
            HeapError::Failed(format!("cannot start the heap profile thread: {error}"))
        })?;
    result.await.unwrap_or_else(|_| {
        Err(HeapError::Failed(
            "the heap profile thread ended without a profile".into(),
        ))
    })
}

/// A heap profile as a gzip-compressed pprof protobuf.
#[cfg(not(all(feature = "heap", target_os = "linux")))]
pub(crate) async fn profile(_head_only: bool) -> Result<Vec<u8>, HeapError> {
    Err(HeapError::NotActive(if cfg!(target_os = "linux") {
        "this program was built without allstop's `heap` feature"
    } else {
        "heap profiles need Linux"
    }))
}
