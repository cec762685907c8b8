//! Noticing that configuration files changed (certificates, the token file): polled file
//! identities, and SIGHUP to reload at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;

/// The state of some files at one moment: a change of any (a rewrite, a rename over it, its
/// removal) means "reload". The files are small (certificates, keys, token lists), so their
/// contents count too: a same-length rewrite within the file system's time resolution is
/// still a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesSeen(Vec<Option<FileState>>);

/// One file's modification time, length, inode and SHA-256.
type FileState = (SystemTime, u64, u64, [u8; 32]);

impl FilesSeen {
    pub fn of(files: &[PathBuf]) -> Self {
        FilesSeen(files.iter().map(|f| identity(f)).collect())
    }
}

/// Files larger than this are told apart by their metadata only.
const HASHED_UP_TO: u64 = 1 << 20;

fn identity(path: &Path) -> Option<FileState> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    let digest = match meta.len() <= HASHED_UP_TO {
        true => sha2::Sha256::digest(std::fs::read(path).ok()?).into(),
        false => [0; 32],
    };
    Some((meta.modified().ok()?, meta.len(), inode, digest))
}

/// Waits for files to change. Files that fail to load are not retried until they change
/// again (or SIGHUP), so a broken file is reported once, not every check.
pub struct FileWatch {
    files: Vec<PathBuf>,
    loaded: FilesSeen,
    failed: Option<FilesSeen>,
    tick: Option<tokio::time::Interval>,
    hangup: Hangup,
}

impl FileWatch {
    /// Watches `files`, last loaded as `seen`, checking every `check_every` (`None`: only on
    /// SIGHUP).
    pub fn new(files: Vec<PathBuf>, seen: FilesSeen, check_every: Option<Duration>) -> Self {
        let tick = check_every.filter(|d| !d.is_zero()).map(|every| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        FileWatch {
            files,
            loaded: seen,
            failed: None,
            tick,
            hangup: hangup_signal(),
        }
    }

    /// Completes when the files differ from what was loaded (and from what last failed), or
    /// at SIGHUP; returns their state, to pass to [`FileWatch::loaded`] or
    /// [`FileWatch::failed`] after trying them. Cancel-safe.
    pub async fn changed(&mut self) -> FilesSeen {
        loop {
            let forced = tokio::select! {
                _ = next_tick(&mut self.tick) => false,
                Some(()) = next_hangup(&mut self.hangup) => true,
            };
            let now = FilesSeen::of(&self.files);
            if forced || (now != self.loaded && self.failed.as_ref() != Some(&now)) {
                return now;
            }
        }
    }

    /// The files, in the state `seen`, loaded.
    pub fn loaded(&mut self, seen: FilesSeen) {
        self.loaded = seen;
        self.failed = None;
    }

    /// The files, in the state `seen`, did not load; true the first time for that state
    /// (worth logging).
    pub fn failed(&mut self, seen: FilesSeen) -> bool {
        let first = self.failed.as_ref() != Some(&seen);
        self.failed = Some(seen);
        first
    }
}

async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(tick) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Completes at the next SIGHUP; never where there is none.
async fn next_hangup(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    let _ = hangup;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_is_noticed_and_a_failed_state_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watched");
        std::fs::write(&file, "one").unwrap();
        let files = vec![file.clone()];
        let mut watch = FileWatch::new(
            files.clone(),
            FilesSeen::of(&files),
            Some(Duration::from_millis(10)),
        );
        std::fs::write(&file, "two, longer").unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the change is noticed");
        assert!(watch.failed(seen.clone()), "first failure of this state");
        assert!(!watch.failed(seen), "the same state again is not news");
        // Unchanged since the failure: nothing to do.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), watch.changed())
                .await
                .is_err()
        );
        std::fs::remove_file(&file).unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("a removal is a change");
        watch.loaded(seen);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), watch.changed())
                .await
                .is_err()
        );
    }
}
