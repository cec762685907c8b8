//! Presentation: decoded pictures wait in a [`PictureQueue`] until the audio clock says they
//! are due (capture time plus the delay audio plays at, less the [`PICTURE_LEAD_US`] a
//! picture may lead its sound), then the window shows them, or the headless presenter
//! (tests, benchmarks) takes them the same way without a window.
//!
//! A picture whose time has passed when a newer one is also due is replaced (counted as not
//! presented); one that comes more than [`TOO_LATE_US`] after its time is dropped and
//! counted, as showing it would put the picture behind the sound, unless the audio is at its
//! ceiling delay and cannot wait for pictures any longer: then late pictures are shown (and
//! counted as such) rather than freezing the picture.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::audio::playout::{AvSync, PICTURE_LEAD_US};
use crate::control::clock::ServerClock;
use crate::metrics::{AvSkew, Latency};

/// How late after its time a picture may still be shown: audio may lead video by at most
/// 15 ms (ATSC IS-191).
pub const TOO_LATE_US: u64 = 15_000;
/// Pictures waiting at most (about a second at 30 fps, more than the sound ever waits);
/// beyond it the oldest is dropped and counted.
const CAPACITY: usize = 32;
/// How often the presenters look for a due picture.
pub const POLL: Duration = Duration::from_millis(2);

/// A decoded picture, converted to the window's pixel format (0RGB in a u32) when there is a
/// window, and what presenting it needs to know.
pub struct Presentable {
    /// Empty for the headless presenter.
    pub pixels: Vec<u32>,
    pub width: usize,
    pub height: usize,
    pub capture_us: u64,
    pub decoded_us: u64,
    /// The test source's once-a-second flash: the media-clock second it marks.
    pub flash_second: Option<u64>,
}

/// What [`PictureQueue::take_due`] found.
#[derive(Default)]
pub struct Due {
    pub picture: Option<Presentable>,
    /// Due pictures passed over for a newer due one.
    pub replaced: u64,
    /// Pictures that came too late for the audio clock, dropped.
    pub too_late: u64,
    /// Pictures that came too late but were shown (audio could not wait longer).
    pub shown_late: u64,
}

/// Decoded pictures in capture order, waiting for their time.
#[derive(Default)]
pub struct PictureQueue {
    pictures: Mutex<VecDeque<Presentable>>,
    closed: AtomicBool,
    /// Pictures dropped because the queue was full, not yet counted in the stats.
    pub overflow: std::sync::atomic::AtomicU64,
}

impl PictureQueue {
    pub fn put(&self, p: Presentable) {
        let mut q = self.pictures.lock().expect("not poisoned");
        if q.len() == CAPACITY {
            q.pop_front();
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
        // Decoding is in order, so pushing at the back keeps capture order.
        q.push_back(p);
    }

    /// The decoder has stopped: the presenters may end once the queue is empty.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// The decoder has stopped: nothing more will come.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn is_finished(&self) -> bool {
        self.is_closed() && self.pictures.lock().expect("not poisoned").is_empty()
    }

    /// The newest picture due at `now_us` (server clock), given the audio's playout delay
    /// (`None`: no audio plays, so pictures are due as soon as they are decoded): due up to
    /// [`PICTURE_LEAD_US`] before the sound of the same instant, too late more than
    /// [`TOO_LATE_US`] after it.
    /// `drop_late`: drop a picture too late for the sound (else show it, counted).
    pub fn take_due(&self, now_us: u64, audio_delay_us: Option<u64>, drop_late: bool) -> Due {
        let mut q = self.pictures.lock().expect("not poisoned");
        let delay = audio_delay_us.unwrap_or(0);
        let due_after = delay.saturating_sub(PICTURE_LEAD_US);
        let mut due = Due::default();
        while q
            .front()
            .is_some_and(|p| p.capture_us + due_after <= now_us)
        {
            let p = q.pop_front().expect("present");
            if let Some(older) = due.picture.replace(p) {
                drop(older);
                due.replaced += 1;
            }
        }
        if let (Some(p), Some(_)) = (&due.picture, audio_delay_us) {
            if now_us > p.capture_us + delay + TOO_LATE_US {
                if drop_late {
                    due.picture = None;
                    due.too_late += 1;
                } else {
                    due.shown_late += 1;
                }
            }
        }
        due
    }
}

/// The presenter's counters (the window's, or the headless presenter's), written by it only.
#[derive(Debug, Default)]
pub struct PresenterCounters {
    pub frames_presented: AtomicU64,
    /// Due pictures replaced by a newer one before they could be shown.
    pub frames_not_presented: AtomicU64,
    /// Pictures dropped because they came too late for the audio clock.
    pub frames_too_late: AtomicU64,
    /// Pictures shown later than the sound because audio was at its ceiling delay.
    pub frames_shown_late: AtomicU64,
    /// Decoded pictures dropped because the picture queue was full.
    pub frames_dropped_queue_full: AtomicU64,
    pub latency: Mutex<PresentLatency>,
}

/// What the presenter measures when a picture reaches the screen.
#[derive(Debug, Default, Clone)]
pub struct PresentLatency {
    /// Decoded to shown (conversion and waiting for the window).
    pub present: Latency,
    /// Capture to shown.
    pub presented: Latency,
}

/// Takes the due picture from `queue` and accounts for it in the stats: presented, replaced,
/// too late. Once it is on the screen, the caller reports it with [`shown`].
pub fn take_and_account(
    queue: &PictureQueue,
    sync: &AvSync,
    clock: &ServerClock,
    counters: &PresenterCounters,
) -> Option<Presentable> {
    let now_server = clock.to_server_us(clock.viewer().now_us());
    let due = queue.take_due(now_server, sync.audio_delay_us(), sync.audio_can_wait());
    if due.picture.is_none() && due.replaced == 0 && due.too_late == 0 {
        return None;
    }
    let c = counters;
    let add = |counter: &AtomicU64, n: u64| {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    };
    add(
        &c.frames_dropped_queue_full,
        queue.overflow.swap(0, Ordering::Relaxed),
    );
    add(&c.frames_not_presented, due.replaced);
    add(&c.frames_too_late, due.too_late);
    add(&c.frames_shown_late, due.shown_late);
    let p = due.picture?;
    add(&c.frames_presented, 1);
    Some(p)
}

/// What [`shown`] needs of a picture once its pixels went to the screen.
#[derive(Debug, Clone, Copy)]
pub struct ShownPicture {
    pub capture_us: u64,
    pub decoded_us: u64,
    pub flash_second: Option<u64>,
}

impl From<&Presentable> for ShownPicture {
    fn from(p: &Presentable) -> Self {
        Self {
            capture_us: p.capture_us,
            decoded_us: p.decoded_us,
            flash_second: p.flash_second,
        }
    }
}

/// A picture has reached the screen (the window's update returned, or at once without a
/// window): its capture-to-presented latency, the present stage, and the A/V skew when it
/// is the test source's flash (paired in `av_skew` with the audio thread's click), all
/// measured now.
pub fn shown(
    p: ShownPicture,
    clock: &ServerClock,
    counters: &PresenterCounters,
    av_skew: &Mutex<AvSkew>,
) {
    let now = clock.viewer().now_us();
    let offset = clock.offset_us();
    let mut l = counters.latency.lock().expect("not poisoned");
    l.present.record_us(now.saturating_sub(p.decoded_us));
    if offset.is_some() {
        let now_server = clock.to_server_us(now);
        l.presented
            .record_us(now_server.saturating_sub(p.capture_us));
    }
    drop(l);
    if let Some(second) = p.flash_second {
        av_skew.lock().expect("not poisoned").on_flash(second, now);
    }
}

/// Presents pictures without a window, on its own thread, until the queue is finished.
pub fn spawn_headless(
    queue: Arc<PictureQueue>,
    sync: Arc<AvSync>,
    clock: ServerClock,
    counters: Arc<PresenterCounters>,
    av_skew: Arc<Mutex<AvSkew>>,
) -> anyhow::Result<thread::JoinHandle<()>> {
    Ok(thread::Builder::new()
        .name("presenter".into())
        .spawn(move || {
            // Once the decoder has stopped, what is due is shown and the rest (pictures whose
            // time is still ahead, at the end of the run) is left.
            loop {
                let closed = queue.is_closed();
                while let Some(p) = take_and_account(&queue, &sync, &clock, &counters) {
                    shown(ShownPicture::from(&p), &clock, &counters, &av_skew);
                }
                if closed {
                    return;
                }
                thread::sleep(POLL);
            }
        })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(capture_us: u64) -> Presentable {
        Presentable {
            pixels: Vec::new(),
            width: 0,
            height: 0,
            capture_us,
            decoded_us: 0,
            flash_second: None,
        }
    }

    #[test]
    fn pictures_wait_for_the_audio_clock() {
        let q = PictureQueue::default();
        q.put(picture(1_000_000));
        q.put(picture(1_033_000));
        // Audio plays 100 ms behind capture: a picture is shown 20 ms before its sound.
        let delay = Some(100_000);
        assert!(q.take_due(1_079_999, delay, true).picture.is_none());
        let due = q.take_due(1_080_000, delay, true);
        assert_eq!(due.picture.map(|p| p.capture_us), Some(1_000_000));
        assert!(q.take_due(1_100_000, delay, true).picture.is_none());
        assert_eq!(
            q.take_due(1_113_000, delay, true)
                .picture
                .map(|p| p.capture_us),
            Some(1_033_000)
        );
    }

    #[test]
    fn without_audio_pictures_are_due_at_once() {
        let q = PictureQueue::default();
        q.put(picture(5_000_000));
        assert!(q.take_due(5_000_000, None, true).picture.is_some());
    }

    #[test]
    fn a_newer_due_picture_replaces_older_ones_and_a_late_one_is_dropped() {
        let q = PictureQueue::default();
        for i in 0..3 {
            q.put(picture(1_000_000 + i * 33_000));
        }
        let delay = Some(100_000);
        // At 1.170 s all three are due; the newest is 4 ms past its time: shown.
        let due = q.take_due(1_170_000, delay, true);
        assert_eq!(due.replaced, 2);
        assert_eq!(due.picture.map(|p| p.capture_us), Some(1_066_000));
        // One that is 20 ms past its time is dropped.
        q.put(picture(1_099_000));
        let due = q.take_due(1_219_000, delay, true);
        assert!(due.picture.is_none());
        assert_eq!(due.too_late, 1);
        // Unless audio cannot wait any longer: then it is shown, and counted.
        q.put(picture(1_132_000));
        let due = q.take_due(1_252_000, delay, false);
        assert!(due.picture.is_some());
        assert_eq!((due.too_late, due.shown_late), (0, 1));
    }

    #[test]
    fn the_queue_is_bounded_and_finishes_when_closed_and_empty() {
        let q = PictureQueue::default();
        for i in 0..(CAPACITY as u64 + 4) {
            q.put(picture(i));
        }
        assert_eq!(q.overflow.load(Ordering::Relaxed), 4);
        q.close();
        assert!(!q.is_finished());
        let _ = q.take_due(u64::MAX / 2, None, true);
        assert!(q.is_finished());
    }
}
