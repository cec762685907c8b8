//! The video decode stage: reorders received frames, decodes them with dav1d on its own
//! thread, converts pictures for the window, and measures latency.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use dav1d::PlanarImageComponent as Component;
use streamsocket_proto::media::FrameHeader;
use streamsocket_proto::pixel_clock;
use tokio::sync::mpsc::UnboundedSender;

use crate::audio::playout::AvSync;
use crate::control::clock::{ServerClock, ViewerClock};
use crate::control::latency_budget::LatencyBudget;
use crate::control::viewer_control::DecoderEvent;
use crate::metrics::VideoStats;
use crate::video::presenter::{PictureQueue, Presentable};
use crate::video::reorder::{Ready, Reorder, Sequenced};

/// A frame as it came off the network, with the viewer's arrival times.
#[derive(Debug)]
pub struct NetFrame {
    pub header: FrameHeader,
    pub payload: Bytes,
    /// Viewer clock when the frame's stream was accepted (its first bytes arrived).
    pub first_byte_us: u64,
    /// Viewer clock when its last byte arrived.
    pub complete_us: u64,
}

impl Sequenced for NetFrame {
    fn seq(&self) -> u64 {
        self.header.seq
    }
    fn is_keyframe(&self) -> bool {
        self.header.keyframe
    }
}

/// What the decoder's queue carries: frames, and the control's events in order with them.
#[derive(Debug)]
pub enum DecoderInput {
    Frame(NetFrame),
    Event(DecoderEvent),
}

/// How long a missing frame is waited for before a keyframe is asked for (the frames after it
/// are kept until the missing frame or a keyframe comes: `reorder`).
pub const GAP_TIMEOUT: Duration = Duration::from_millis(150);

pub struct DecoderContext {
    pub clock: ViewerClock,
    /// The server's clock, which capture times are on.
    pub server_clock: ServerClock,
    /// The decoder's counters (its share of the video stats), written by its thread only.
    pub counters: Arc<Mutex<VideoStats>>,
    /// Keyframe requests to the control task (rendition id).
    pub keyframe_requests: UnboundedSender<u8>,
    /// Where decoded pictures wait for their time to be shown.
    pub pictures: Arc<PictureQueue>,
    /// Convert pictures to pixels for a window (false: headless, nothing to draw).
    pub convert: bool,
    /// The audio clock pictures follow; the decoder tells it the video's latency.
    pub sync: Arc<AvSync>,
    /// Viewer clock when connecting started, for the first-frame time.
    pub connect_start_us: u64,
    /// dav1d worker threads (0: one per core).
    pub decoder_threads: u32,
    /// A frame decoded within the latency budget of its capture counts as live.
    pub budget: LatencyBudget,
    /// `--record`: every frame given to the decoder also goes to the recording.
    pub recorder: Option<crate::record::Recorder>,
    /// `--dump-y4m`: every decoded picture also goes to a file.
    pub dump: Option<Mutex<crate::record::y4m_dump::Y4mDump>>,
}

pub fn spawn(
    input: Receiver<DecoderInput>,
    ctx: DecoderContext,
) -> anyhow::Result<thread::JoinHandle<()>> {
    let mut settings = dav1d::Settings::new();
    // Output each frame as soon as it is decoded: no frame-level pipelining delay.
    settings.set_max_frame_delay(1);
    settings.set_n_threads(ctx.decoder_threads);
    let decoder = dav1d::Decoder::with_settings(&settings)
        .map_err(|e| anyhow::anyhow!("cannot start the dav1d decoder: {e}"))?;
    Ok(thread::Builder::new().name("dav1d".into()).spawn(move || {
        run(decoder, input, &ctx);
        ctx.pictures.close();
    })?)
}

struct InFlight {
    header: FrameHeader,
    first_byte_us: u64,
    complete_us: u64,
    decode_start_us: u64,
}

/// Per-rendition reordering, and which rendition is on screen. Frames of the rendition the
/// server last confirmed (`target`) are collected apart; the picture switches to it at its
/// first decodable frame (a keyframe), so the old rendition plays until then.
struct Tracks {
    current: Option<u8>,
    current_track: Reorder<NetFrame>,
    target_track: Option<(u8, Reorder<NetFrame>)>,
    /// Counters of tracks already dropped.
    skipped_before: u64,
    late_before: u64,
    /// Frames of a rendition neither shown nor wanted (left over from before a switch).
    stale: u64,
    switches: u64,
}

impl Tracks {
    fn new() -> Self {
        Self {
            current: None,
            current_track: Reorder::new(GAP_TIMEOUT),
            target_track: None,
            skipped_before: 0,
            late_before: 0,
            stale: 0,
            switches: 0,
        }
    }

    /// Takes a frame; returns the frames to decode and whether the picture switched rendition.
    fn push(
        &mut self,
        frame: NetFrame,
        target: Option<u8>,
        now: Instant,
    ) -> (Ready<NetFrame>, bool) {
        let r = frame.header.rendition;
        if self.current.is_none() {
            self.current = Some(r);
        }
        if Some(r) == self.current {
            return (self.current_track.push(frame, now), false);
        }
        if Some(r) != target {
            self.stale += 1;
            return (Ready::default(), false);
        }
        if self.target_track.as_ref().is_none_or(|(t, _)| *t != r) {
            self.target_track = Some((r, Reorder::new(GAP_TIMEOUT)));
        }
        let (_, track) = self.target_track.as_mut().expect("just set");
        let ready = track.push(frame, now);
        if ready.frames.is_empty() {
            return (ready, false);
        }
        // The target is decodable: it becomes the picture.
        let (r, track) = self.target_track.take().expect("present");
        let old = std::mem::replace(&mut self.current_track, track);
        self.skipped_before += old.skipped;
        self.late_before += old.late;
        self.current = Some(r);
        self.switches += 1;
        (ready, true)
    }

    /// Starts over, waiting for a keyframe, without counting the sequence numbers in between
    /// as lost: the broadcaster paused the stream, and the encoders went on numbering.
    fn resync(&mut self) {
        let old = std::mem::replace(&mut self.current_track, Reorder::new(GAP_TIMEOUT));
        self.skipped_before += old.skipped;
        self.late_before += old.late;
        self.target_track = None;
    }

    fn skipped(&self) -> u64 {
        self.skipped_before + self.current_track.skipped
    }

    fn late(&self) -> u64 {
        self.late_before + self.current_track.late + self.stale
    }
}

fn run(mut decoder: dav1d::Decoder, input: Receiver<DecoderInput>, ctx: &DecoderContext) {
    let mut tracks = Tracks::new();
    // The rendition the server last confirmed for this viewer.
    let mut target = None;
    // When the viewer last asked for another rendition (viewer clock), until the switch.
    let mut switch_asked = None;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    loop {
        let wait = tracks
            .current_track
            .gap_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(500));
        let (ready, switched) = match input.recv_timeout(wait) {
            Ok(DecoderInput::Event(DecoderEvent::Target(r))) => {
                target = Some(r);
                continue;
            }
            // The broadcaster paused (or the viewer reconnected): the frames after it start
            // again from a keyframe, and the numbers skipped meanwhile are not losses.
            Ok(DecoderInput::Event(DecoderEvent::Resync)) => {
                tracks.resync();
                continue;
            }
            Ok(DecoderInput::Event(DecoderEvent::SwitchAsked { at_us })) => {
                switch_asked = Some(at_us);
                continue;
            }
            Ok(DecoderInput::Event(DecoderEvent::SwitchAbandoned)) => {
                switch_asked = None;
                continue;
            }
            Ok(DecoderInput::Frame(frame)) => {
                let (seq, late_before) = (frame.header.seq, tracks.late());
                let pushed = tracks.push(frame, target, Instant::now());
                if tracks.late() > late_before {
                    tracing::debug!("video frame {seq} arrived after decoding moved past it");
                }
                pushed
            }
            Err(RecvTimeoutError::Timeout) => {
                let awaited = tracks.current_track.awaited();
                let asks_before = tracks.current_track.keyframe_waits;
                let ready = tracks.current_track.poll(Instant::now());
                if let (true, Some(seq)) = (ready.need_keyframe, awaited) {
                    if tracks.current_track.keyframe_waits > asks_before {
                        tracing::info!(
                            "video frame {seq} still missing {} ms after a later one arrived: asking for a keyframe (whichever comes first is decoded)",
                            GAP_TIMEOUT.as_millis()
                        );
                    } else {
                        tracing::debug!(
                            "video frame {seq} still missing: asking for a keyframe again"
                        );
                    }
                }
                (ready, false)
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if switched {
            let mut v = ctx.counters.lock().expect("not poisoned");
            v.rendition_switches += 1;
            if let Some(asked) = switch_asked.take() {
                v.switch_time
                    .record_us(ctx.clock.now_us().saturating_sub(asked));
            }
        }
        let mut need_keyframe = ready.need_keyframe;
        for frame in ready.frames {
            if let Err(e) = decode_one(&mut decoder, frame, &mut in_flight, ctx) {
                tracing::warn!("decoding failed, waiting for a keyframe: {e}");
                ctx.counters.lock().expect("not poisoned").decode_errors += 1;
                decoder.flush();
                in_flight.clear();
                need_keyframe |= tracks.current_track.decoder_failed().need_keyframe;
                break;
            }
        }
        {
            let mut v = ctx.counters.lock().expect("not poisoned");
            v.frames_skipped = tracks.skipped();
            v.frames_late = tracks.late();
            if need_keyframe {
                v.keyframe_requests += 1;
            }
        }
        if let (true, Some(r)) = (need_keyframe, tracks.current) {
            let _ = ctx.keyframe_requests.send(r);
        }
    }
}

fn decode_one(
    decoder: &mut dav1d::Decoder,
    frame: NetFrame,
    in_flight: &mut VecDeque<InFlight>,
    ctx: &DecoderContext,
) -> Result<(), dav1d::Error> {
    let decode_start_us = ctx.clock.now_us();
    if let Some(r) = &ctx.recorder {
        r.video(
            &frame.payload,
            frame.header.keyframe,
            frame.header.capture_us,
        );
    }
    in_flight.push_back(InFlight {
        header: frame.header,
        first_byte_us: frame.first_byte_us,
        complete_us: frame.complete_us,
        decode_start_us,
    });
    match decoder.send_data(frame.payload, None, Some(frame.header.seq as i64), None) {
        Ok(()) => {}
        Err(dav1d::Error::Again) => {
            // The decoder holds a picture we must take first; then it takes the rest.
            drain_pictures(decoder, in_flight, ctx)?;
            match decoder.send_pending_data() {
                Ok(()) | Err(dav1d::Error::Again) => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    drain_pictures(decoder, in_flight, ctx)
}

fn drain_pictures(
    decoder: &mut dav1d::Decoder,
    in_flight: &mut VecDeque<InFlight>,
    ctx: &DecoderContext,
) -> Result<(), dav1d::Error> {
    loop {
        match decoder.get_picture() {
            Ok(picture) => {
                let seq = picture.timestamp().unwrap_or(-1);
                // Frames whose picture never came (should not happen with frame delay 1).
                while in_flight
                    .front()
                    .is_some_and(|f| (f.header.seq as i64) < seq)
                {
                    in_flight.pop_front();
                }
                let Some(info) = in_flight.pop_front() else {
                    continue;
                };
                on_picture(&picture, info, ctx);
            }
            Err(dav1d::Error::Again) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn on_picture(picture: &dav1d::Picture, info: InFlight, ctx: &DecoderContext) {
    let decoded_us = ctx.clock.now_us();
    let (w, h) = (picture.width() as usize, picture.height() as usize);
    let y = picture.plane(Component::Y);
    let y_stride = picture.stride(Component::Y) as usize;
    let read_ms = pixel_clock::read(&y, y_stride, w, h);

    if let Some(dump) = &ctx.dump {
        let planes = (picture.plane(Component::U), picture.plane(Component::V));
        let p = crate::record::y4m_dump::Planes {
            width: w,
            height: h,
            y: &y,
            y_stride,
            u: &planes.0,
            v: &planes.1,
            uv_stride: picture.stride(Component::U) as usize,
        };
        let mut dump = dump.lock().expect("not poisoned");
        let result = dump.write(&p, info.header.capture_us);
        let mut v = ctx.counters.lock().expect("not poisoned");
        match result {
            Ok(()) => v.frames_dumped += 1,
            Err(e) => {
                if v.dump_errors == 0 {
                    tracing::error!("--dump-y4m: {e:#}");
                }
                v.dump_errors += 1;
            }
        }
    }

    let flash_second = read_ms
        .filter(|ms| ms % 1000 == 0 && flash_visible(&y, y_stride, w, h))
        .map(|ms| ms as u64 / 1000);
    let pixels = if ctx.convert {
        to_pixels(picture)
    } else {
        Some(Vec::new())
    };

    let mut counters = ctx.counters.lock().expect("not poisoned");
    let offset = ctx.server_clock.offset_us();
    let v = &mut *counters;
    v.frames_decoded += 1;
    if let Some(last) = v.last_decoded_us.replace(decoded_us) {
        v.longest_freeze_us = v.longest_freeze_us.max(decoded_us.saturating_sub(last));
    }
    if v.first_frame_ms.is_none() {
        let ms = decoded_us.saturating_sub(ctx.connect_start_us) as f64 / 1000.0;
        v.first_frame_ms = Some(ms);
        tracing::info!("first frame decoded {ms:.0} ms after connecting started ({w}x{h})");
    }
    v.width = w as u32;
    v.height = h as u32;
    *v.frames_by_size.entry((w as u32, h as u32)).or_insert(0) += 1;
    match read_ms {
        Some(ms) => {
            v.pixel_clock.read += 1;
            if ms == (info.header.capture_us / 1000) as u32 {
                v.pixel_clock.matched += 1;
            }
        }
        None => v.pixel_clock.unreadable += 1,
    }
    let t = info.header.timing;
    v.stages.encoder_queue.record_us(t.queue_us as u64);
    v.stages.encoder_wait.record_us(t.encoder_wait_us as u64);
    v.stages.encode.record_us(t.encode_us as u64);
    v.stages
        .reassembly
        .record_us(info.complete_us.saturating_sub(info.first_byte_us));
    v.stages
        .reorder
        .record_us(info.decode_start_us.saturating_sub(info.complete_us));
    v.stages
        .decode
        .record_us(decoded_us.saturating_sub(info.decode_start_us));
    if let Some(offset) = offset {
        let to_server = |us: u64| crate::control::clock::to_server_us(us, Some(offset));
        let encoded_us = info.header.capture_us
            + t.queue_us as u64
            + t.encoder_wait_us as u64
            + t.encode_us as u64;
        v.stages
            .transport
            .record_us(to_server(info.first_byte_us).saturating_sub(encoded_us));
        let latency_us = to_server(decoded_us).saturating_sub(info.header.capture_us);
        v.latency_decoded.record_us(latency_us);
        // Audio waits for pictures ready to show: decoded and converted (done by now).
        ctx.sync
            .on_video_ready(to_server(ctx.clock.now_us()).saturating_sub(info.header.capture_us));
        v.latency_last_second.record_us(latency_us);
        if v.live_ms.is_none() && latency_us <= ctx.budget.as_us() {
            v.live_ms = Some(decoded_us.saturating_sub(ctx.connect_start_us) as f64 / 1000.0);
        }
        v.stages
            .outside_encoder
            .record_us(to_server(decoded_us).saturating_sub(encoded_us));
    }
    drop(counters);
    if let Some(pixels) = pixels {
        ctx.pictures.put(Presentable {
            pixels,
            width: w,
            height: h,
            capture_us: info.header.capture_us,
            decoded_us,
            flash_second,
        });
    }
}

/// Whether the test source's flash square (bottom right, a quarter of the height, 8 pixels
/// from the edges) is white in this picture.
fn flash_visible(y: &[u8], stride: usize, w: usize, h: usize) -> bool {
    let size = h / 4;
    let (cx, cy) = (
        w.saturating_sub(size / 2 + 8),
        h.saturating_sub(size / 2 + 8),
    );
    y.get(cy * stride + cx).is_some_and(|&luma| luma > 180)
}

/// Converts an I420 picture to 0RGB pixels with the `yuv` crate's SIMD paths.
fn to_pixels(picture: &dav1d::Picture) -> Option<Vec<u32>> {
    if picture.pixel_layout() != dav1d::PixelLayout::I420 || picture.bit_depth() != 8 {
        tracing::warn!("unsupported picture format {:?}", picture.pixel_layout());
        return None;
    }
    let (w, h) = (picture.width() as usize, picture.height() as usize);
    let (yp, up, vp) = (
        picture.plane(Component::Y),
        picture.plane(Component::U),
        picture.plane(Component::V),
    );
    let image = yuv::YuvPlanarImage {
        y_plane: &yp,
        y_stride: picture.stride(Component::Y),
        u_plane: &up,
        u_stride: picture.stride(Component::U),
        v_plane: &vp,
        v_stride: picture.stride(Component::V),
        width: w as u32,
        height: h as u32,
    };
    let mut pixels = vec![0u32; w * h];
    // 0RGB in a little-endian u32 is B, G, R, X in memory: BGRA.
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut pixels);
    if let Err(e) = yuv::yuv420_to_bgra(
        &image,
        bytes,
        (w * 4) as u32,
        yuv::YuvRange::Limited,
        yuv::YuvStandardMatrix::Bt601,
    ) {
        tracing::warn!("colour conversion failed: {e}");
        return None;
    }
    Some(pixels)
}
