//! The runs each canary started on the current UTC day: what holds `daily_cap` across reloads
//! (counts are kept by canary name, not by the canary's configuration) and, with
//! `--storage.path`, across restarts, in a small state file like Alertmanager's notification log.
//!
//! A run is written down before its send goes out: a crash between the write and the send loses
//! one run of the day, and never bills one more than the cap. The file is replaced whole and
//! atomically (a temporary file in the same directory, fsync, rename), so a crash leaves the old
//! file or the new one. At start, only the counts of the current UTC day are read back.
//!
//! A file that cannot be read back (not the ledger's JSON, too large, no permission) is told in a
//! warning that names the file, never its content, and then every canary counts as at its cap
//! until 00:00 UTC: an unknown count could already be the cap, and a canary that waits costs a
//! few hours of checks while one that resends costs billed messages. The next day's first run
//! replaces the file.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sync::lock;

/// The state file, in the `--storage.path` directory.
pub const FILE_NAME: &str = "canary-runs.json";
const TEMP_NAME: &str = ".canary-runs.json.tmp";
/// A file of a few canaries is a few hundred bytes; anything near this is not the ledger's.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What the file holds: per canary name, the UTC day (days since the Unix epoch) and the runs
/// started on it.
#[derive(Serialize, Deserialize, Default)]
struct Stored {
    runs: BTreeMap<String, Day>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct Day {
    day: u64,
    started: u32,
}

/// A canary's count for the day, and whether its cap was already told in the log.
#[derive(Clone, Copy)]
struct Count {
    day: Day,
    warned: bool,
}

/// Whether a run may start.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Counted (and written down, with a state file): the send may go out.
    Run,
    /// The day's cap is reached; `first` the first time this day, to tell it once.
    Capped { first: bool },
    /// The state file could not be written: no send goes out uncounted. The reason is the I/O
    /// error's kind, never a path's content.
    Unrecorded(String),
}

/// The day counts of every canary of the process.
pub struct Ledger {
    /// The state directory, when there is one.
    dir: Option<PathBuf>,
    /// Whether the runs before this process are known (a state file, or a world that is new with
    /// the process): only then may a first run come before a full interval.
    known: bool,
    counts: Mutex<HashMap<String, Count>>,
    /// The day on which every canary counts as capped (the state file could not be read).
    blocked: Option<u64>,
    /// One write at a time, each with every count taken before it.
    writing: tokio::sync::Mutex<()>,
}

impl Ledger {
    /// No state file: this process cannot know what ran before it.
    pub fn unknown() -> Self {
        Self::with(None, false, HashMap::new(), None)
    }

    /// No state file, and nothing ran before: the demo's simulated gateways start with it.
    pub fn fresh() -> Self {
        Self::with(None, true, HashMap::new(), None)
    }

    /// The ledger of `dir` (created if missing), holding the counts of UTC day `today`; `Err`
    /// when the directory cannot be made.
    pub fn open(dir: &Path, today: u64) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "--storage.path {}: cannot create the directory: {}",
                dir.display(),
                e.kind()
            )
        })?;
        let file = dir.join(FILE_NAME);
        let (counts, blocked) = match read(&file) {
            Ok(stored) => (of_today(stored, today), None),
            Err(reason) => {
                tracing::warn!(file = %file.display(), reason = %reason, "the canary state file cannot be read: every canary counts as at its daily_cap until 00:00 UTC, so that no run is billed twice; remove the file to start afresh");
                (HashMap::new(), Some(today))
            }
        };
        Ok(Self::with(Some(dir.to_path_buf()), true, counts, blocked))
    }

    fn with(
        dir: Option<PathBuf>,
        known: bool,
        counts: HashMap<String, Count>,
        blocked: Option<u64>,
    ) -> Self {
        Ledger {
            dir,
            known,
            counts: Mutex::new(counts),
            blocked,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the runs before this process are known, so that a first run may come early.
    pub fn knows_the_past(&self) -> bool {
        self.known
    }

    /// Counts a run of canary `name` on UTC day `day` if `cap` allows it, and writes it down
    /// before answering [`Admission::Run`].
    pub async fn start_run(&self, name: &str, cap: u32, day: u64) -> Admission {
        let _one = self.writing.lock().await;
        let snapshot = {
            let mut counts = lock(&self.counts);
            let c = counts.entry(name.to_string()).or_insert(Count {
                day: Day { day, started: 0 },
                warned: false,
            });
            if c.day.day != day {
                *c = Count {
                    day: Day { day, started: 0 },
                    warned: false,
                };
            }
            if self.blocked == Some(day) || c.day.started >= cap {
                let first = !c.warned;
                c.warned = true;
                return Admission::Capped { first };
            }
            c.day.started += 1;
            Stored {
                runs: counts
                    .iter()
                    .filter(|(_, c)| c.day.day == day)
                    .map(|(n, c)| (n.clone(), c.day))
                    .collect(),
            }
        };
        let Some(dir) = self.dir.clone() else {
            return Admission::Run;
        };
        let written = tokio::task::spawn_blocking(move || write(&dir, &snapshot)).await;
        match written {
            Ok(Ok(())) => Admission::Run,
            Ok(Err(e)) => Admission::Unrecorded(e.kind().to_string()),
            Err(_) => Admission::Unrecorded("the write was cancelled".into()),
        }
    }
}

/// The stored counts; a missing file is an empty ledger.
fn read(file: &Path) -> Result<Stored, String> {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::default()),
        Err(e) => return Err(e.kind().to_string()),
    };
    let mut body = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.kind().to_string())?;
    if body.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| crate::json::describe_error(&e))
}

/// The counts of `today`. A day after today means the clock went back: that count stands for
/// today, as the runs it counts may be today's.
fn of_today(stored: Stored, today: u64) -> HashMap<String, Count> {
    stored
        .runs
        .into_iter()
        .filter(|(_, d)| d.day >= today)
        .map(|(name, d)| {
            let day = Day {
                day: today,
                started: d.started,
            };
            (name, Count { day, warned: false })
        })
        .collect()
}

/// Replaces the file whole: a crash leaves the old one or the new one, never a mix.
fn write(dir: &Path, stored: &Stored) -> std::io::Result<()> {
    let body = serde_json::to_vec(stored)?;
    let tmp = dir.join(TEMP_NAME);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    // The rename lasts through a power cut once the directory is synced too; where a directory
    // cannot be opened to sync (not on Unix), the rename is still atomic.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir()
                .join(format!("wa-exporter-ledger-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TODAY: u64 = 20_430;

    #[tokio::test]
    async fn the_day_count_survives_a_restart() {
        let dir = Dir::new("restart");
        let l = Ledger::open(&dir.0, TODAY).unwrap();
        assert!(l.knows_the_past());
        assert_eq!(l.start_run("probe", 1, TODAY).await, Admission::Run);
        let again = Ledger::open(&dir.0, TODAY).unwrap();
        assert_eq!(
            again.start_run("probe", 1, TODAY).await,
            Admission::Capped { first: true }
        );
        assert_eq!(
            again.start_run("probe", 1, TODAY).await,
            Admission::Capped { first: false },
            "told once"
        );
        assert_eq!(again.start_run("other", 1, TODAY).await, Admission::Run);
        assert_eq!(again.start_run("probe", 1, TODAY + 1).await, Admission::Run);
        assert!(!dir.0.join(TEMP_NAME).exists());
    }

    #[tokio::test]
    async fn counts_of_another_day_are_not_read_back() {
        let dir = Dir::new("old-day");
        std::fs::create_dir_all(&dir.0).unwrap();
        let body = format!(
            r#"{{"runs":{{"old":{{"day":{},"started":5}},"ahead":{{"day":{},"started":5}}}}}}"#,
            TODAY - 1,
            TODAY + 1
        );
        std::fs::write(dir.0.join(FILE_NAME), body).unwrap();
        let l = Ledger::open(&dir.0, TODAY).unwrap();
        assert_eq!(l.start_run("old", 5, TODAY).await, Admission::Run);
        assert_eq!(
            l.start_run("ahead", 5, TODAY).await,
            Admission::Capped { first: true },
            "a clock that went back does not reopen the day"
        );
        let stored = read(&dir.0.join(FILE_NAME)).unwrap();
        assert_eq!(
            stored.runs.get("old"),
            Some(&Day {
                day: TODAY,
                started: 1
            })
        );
    }

    #[tokio::test]
    async fn an_unreadable_file_caps_the_day_and_says_so_without_its_content() {
        for (name, body) in [
            ("garbage", &b"+5511999998888 not json"[..]),
            ("shape", &br#"{"runs":{"probe":{"day":"x"}}}"#[..]),
            ("huge", &vec![b' '; MAX_FILE_BYTES as usize + 10][..]),
        ] {
            let dir = Dir::new(name);
            std::fs::create_dir_all(&dir.0).unwrap();
            std::fs::write(dir.0.join(FILE_NAME), body).unwrap();
            let e = read(&dir.0.join(FILE_NAME)).err().unwrap();
            assert!(!e.contains("5511999998888"), "{e}");
            let l = Ledger::open(&dir.0, TODAY).unwrap();
            assert_eq!(
                l.start_run("probe", 10, TODAY).await,
                Admission::Capped { first: true },
                "{name}"
            );
            assert_eq!(l.start_run("probe", 10, TODAY + 1).await, Admission::Run);
        }
    }

    #[tokio::test]
    async fn a_missing_file_is_an_empty_ledger() {
        let dir = Dir::new("missing");
        let l = Ledger::open(&dir.0, TODAY).unwrap();
        assert_eq!(l.start_run("probe", 1, TODAY).await, Admission::Run);
        assert!(dir.0.join(FILE_NAME).exists(), "written before the send");
    }

    #[tokio::test]
    async fn without_a_file_the_count_holds_in_memory_and_the_past_is_unknown() {
        let l = Ledger::unknown();
        assert!(!l.knows_the_past());
        assert!(Ledger::fresh().knows_the_past());
        assert_eq!(l.start_run("probe", 1, TODAY).await, Admission::Run);
        assert_eq!(
            l.start_run("probe", 1, TODAY).await,
            Admission::Capped { first: true }
        );
    }
}
