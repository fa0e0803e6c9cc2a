//! The wasmtime [`Engine`] of a runtime and its epoch ticker.
//!
//! One engine per [`Runtime`](crate::Runtime): component model, Cranelift, epoch
//! interruption, and the pooling instance allocator when it can be set up (it reserves
//! address space up front; if the system refuses, the runtime falls back to on-demand
//! allocation and [`EngineHandle::pooling`] says so). Pool bounds come from
//! [`RuntimeConfig`](crate::RuntimeConfig): `max_concurrent_steps` component instances, each
//! with at most 32 core instances, 4 memories and 16 tables; every memory slot holds up to
//! `max_memory_bytes`, the largest manifest memory limit the runtime accepts.
//!
//! A background thread increments the engine's epoch every `epoch_tick` (10 ms by default);
//! step deadlines are checked on each tick. The thread stops when the handle is dropped.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;

/// Core instances one component may hold (a Rust component has a handful; adapted preview1
/// modules a few more).
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Linear memories one component may hold.
const MEMORIES_PER_COMPONENT: u32 = 4;
/// Tables one component may hold.
const TABLES_PER_COMPONENT: u32 = 16;

/// The settings the engine is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineSettings {
    pub(crate) pooling: bool,
    pub(crate) max_concurrent_steps: u32,
    pub(crate) max_memory_bytes: u64,
    pub(crate) epoch_tick: Duration,
}

/// An engine plus the thread that ticks its epoch.
pub struct EngineHandle {
    engine: Engine,
    pooling: bool,
    tick: Duration,
    stop: Arc<(Mutex<bool>, Condvar)>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("pooling", &self.pooling)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl EngineHandle {
    pub(crate) fn new(settings: EngineSettings) -> Result<Self, RuntimeError> {
        if settings.epoch_tick.is_zero() {
            return Err(RuntimeError::Config("`epoch_tick` must not be zero".into()));
        }
        if settings.max_concurrent_steps == 0 {
            return Err(RuntimeError::Config(
                "`max_concurrent_steps` must be at least 1".into(),
            ));
        }
        let max_memory = usize::try_from(settings.max_memory_bytes).map_err(|_| {
            RuntimeError::Config("`max_memory_bytes` does not fit this platform".into())
        })?;
        let (engine, pooling) = if settings.pooling {
            match Engine::new(&config(Some(pooling_config(settings, max_memory)))) {
                Ok(engine) => (engine, true),
                // The system refused the reservation: on-demand allocation still works.
                Err(_) => (
                    Engine::new(&config(None)).map_err(|e| RuntimeError::Engine(e.to_string()))?,
                    false,
                ),
            }
        } else {
            (
                Engine::new(&config(None)).map_err(|e| RuntimeError::Engine(e.to_string()))?,
                false,
            )
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            let tick = settings.epoch_tick;
            std::thread::Builder::new()
                .name("labhit-epoch".into())
                .spawn(move || ticker(&engine, &stop, tick))
                .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker: {e}")))?
        };
        Ok(Self {
            engine,
            pooling,
            tick: settings.epoch_tick,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// How often the epoch advances.
    pub fn tick(&self) -> Duration {
        self.tick
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.ticker.take() {
            let _ = thread.join();
        }
    }
}

fn ticker(engine: &Engine, stop: &(Mutex<bool>, Condvar), tick: Duration) {
    let (stopped, wake) = stop;
    let mut guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let (next, timeout) = wake
            .wait_timeout(guard, tick)
            .unwrap_or_else(|p| p.into_inner());
        guard = next;
        if *guard {
            return;
        }
        if timeout.timed_out() {
            engine.increment_epoch();
        }
    }
}

fn config(pooling: Option<PoolingAllocationConfig>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    if let Some(pooling) = pooling {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    config
}

/// Whether the kernel offers PAGEMAP_SCAN (Linux 6.7 and later).
fn pagemap_scan_supported() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| kernel_version(&release))
        .is_some_and(|version| version >= (6, 7))
}

/// `(major, minor)` of a kernel release string such as `6.18.2-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn pooling_config(settings: EngineSettings, max_memory: usize) -> PoolingAllocationConfig {
    let steps = settings.max_concurrent_steps;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(steps)
        .total_core_instances(steps.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(steps.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(steps.saturating_mul(TABLES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(max_memory)
        // Reset tables with memset instead of giving their pages back to the kernel (measured:
        // slightly cheaper per step).
        .table_keep_resident(1 << 16)
        // Keep up to 1 MiB of each linear memory resident and, where the kernel has
        // PAGEMAP_SCAN (Linux ≥ 6.7), reset only the pages a step actually touched. Measured
        // on 2 cores: a no-op step ~20 → ~10 µs and 2-thread throughput ~40k → 100k+ steps/s.
        // Without PAGEMAP_SCAN (`Auto` falls back) keeping memory resident is slower than
        // `madvise`, so the resident size is only raised when the scan is available.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(if pagemap_scan_supported() { 1 << 20 } else { 0 })
        // Give memory back to the kernel in batches: every `madvise` flushes the TLBs of all
        // cores, which made concurrent steps stall each other (measured: ~25 % fewer no-op
        // steps per second on 2 threads, ~20 % slower single steps with batches of 1). The
        // pool flushes the batch early when it runs out of free slots.
        .decommit_batch_size((steps / 2).clamp(1, 32) as usize);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.2-amd64\n"), Some((6, 18)));
        assert_eq!(kernel_version("5.10.0"), Some((5, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert!((6, 6) < (6, 7) && (7, 0) > (6, 7));
    }

    /// `(module (func (export "spin") (loop (br 0))))`, assembled by hand.
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x03, 0x02, 0x01, 0x00, // function section
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop { br 0 }
    ];

    #[test]
    fn the_ticker_interrupts_a_spinning_guest_and_stops_on_drop() {
        let handle = EngineHandle::new(EngineSettings {
            pooling: true,
            max_concurrent_steps: 4,
            max_memory_bytes: 64 << 20,
            epoch_tick: Duration::from_millis(5),
        })
        .expect("engine");
        let module = wasmtime::Module::new(handle.engine(), SPIN).expect("module");
        let mut store = wasmtime::Store::new(handle.engine(), ());
        store.set_epoch_deadline(2);
        store.epoch_deadline_trap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .expect("export");
        let start = Instant::now();
        let err = spin.call(&mut store, ()).expect_err("interrupted");
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        drop(store);
        let start = Instant::now();
        drop(handle);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the ticker stops promptly"
        );
    }

    #[test]
    fn zero_tick_is_refused() {
        let err = EngineHandle::new(EngineSettings {
            pooling: false,
            max_concurrent_steps: 1,
            max_memory_bytes: 1 << 20,
            epoch_tick: Duration::ZERO,
        })
        .expect_err("refused");
        assert!(err.to_string().contains("epoch_tick"), "{err}");
    }
}
