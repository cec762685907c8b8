//! Receiving media: every frame on its own unidirectional stream, every audio packet in a
//! datagram. Frames go to the decoder's queue (bounded), packets to the audio thread's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Sender, TrySendError};
use streamsocket_proto::media::AudioHeader;
use streamsocket_proto::ErrorCode;
use streamsocket_transport::{read_frame, ReadError};

use crate::audio::NetAudio;
use crate::control::clock::ViewerClock;
use crate::metrics::BroadcastStats;
use crate::video::decoder::{DecoderInput, NetFrame};

/// Frames the decoder's queue holds; it has [`EVENT_ROOM`] more places for the events that
/// travel in order with the frames (a rendition confirmed, a resync).
pub const FRAME_QUEUE: usize = 32;
pub const EVENT_ROOM: usize = 8;

/// The receive path's counters: its own, written by the frame and datagram tasks without a
/// lock shared with other stages.
#[derive(Debug, Default)]
pub struct ReceiveCounters {
    pub frames_received: AtomicU64,
    /// Frame payload bytes.
    pub frame_bytes: AtomicU64,
    pub keyframes: AtomicU64,
    /// Frames lost because the decoder's input queue was full.
    pub frames_dropped_decoder_busy: AtomicU64,
    /// Frame streams the server reset or that broke off.
    pub frames_reset: AtomicU64,
    pub frames_malformed: AtomicU64,
    pub audio_packets_received: AtomicU64,
    /// Opus payload bytes.
    pub audio_bytes: AtomicU64,
    /// Packets lost because the audio thread's input queue was full.
    pub audio_packets_dropped_busy: AtomicU64,
    pub audio_packets_malformed: AtomicU64,
    /// The broadcaster's pauses (the control stream tells them) and the frames around them.
    pub broadcast: Mutex<BroadcastStats>,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The decoder's input queue.
pub fn decoder_queue() -> (
    Sender<DecoderInput>,
    crossbeam_channel::Receiver<DecoderInput>,
) {
    crossbeam_channel::bounded(FRAME_QUEUE + EVENT_ROOM)
}

pub async fn receive_frames(
    conn: quinn::Connection,
    out: Sender<DecoderInput>,
    clock: ViewerClock,
    counters: Arc<ReceiveCounters>,
) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let first_byte_us = clock.now_us();
        let out = out.clone();
        let c = counters.clone();
        tokio::spawn(async move {
            let result = read_frame(&mut recv).await;
            let complete_us = clock.now_us();
            match result {
                Ok(f) => deliver_frame(
                    &out,
                    &c,
                    NetFrame {
                        header: f.header,
                        payload: f.payload,
                        first_byte_us,
                        complete_us,
                    },
                ),
                Err(ReadError::Malformed(e)) => {
                    add(&c.frames_malformed, 1);
                    tracing::warn!("malformed frame stream: {e}");
                    let _ = recv.stop(quinn::VarInt::from_u32(
                        ErrorCode::MalformedMessage.to_u16() as u32,
                    ));
                }
                Err(ReadError::Stream(quinn::ReadError::Reset(_))) | Err(ReadError::Truncated) => {
                    add(&c.frames_reset, 1);
                }
                Err(_) => {} // connection gone
            }
        });
    }
}

/// Counts a received frame and queues it for the decoder (counted as dropped when the queue
/// is full: the decoder is behind).
pub(crate) fn deliver_frame(out: &Sender<DecoderInput>, c: &ReceiveCounters, frame: NetFrame) {
    add(&c.frames_received, 1);
    add(&c.frame_bytes, frame.payload.len() as u64);
    c.broadcast
        .lock()
        .expect("not poisoned")
        .on_frame(frame.header.keyframe);
    if frame.header.keyframe {
        add(&c.keyframes, 1);
    }
    // The queue's last places are kept for the control's events.
    if out.len() >= FRAME_QUEUE {
        add(&c.frames_dropped_decoder_busy, 1);
    } else {
        match out.try_send(DecoderInput::Frame(frame)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => add(&c.frames_dropped_decoder_busy, 1),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Counts a received audio packet and queues it for the audio thread.
pub(crate) fn deliver_audio(out: &Sender<NetAudio>, c: &ReceiveCounters, packet: NetAudio) {
    add(&c.audio_packets_received, 1);
    add(&c.audio_bytes, packet.payload.len() as u64);
    if out.try_send(packet).is_err() {
        add(&c.audio_packets_dropped_busy, 1);
    }
}

pub async fn receive_audio(
    conn: quinn::Connection,
    out: Sender<NetAudio>,
    counters: Arc<ReceiveCounters>,
) {
    let c = counters;
    while let Ok(datagram) = conn.read_datagram().await {
        match AudioHeader::decode(&datagram) {
            Ok((header, payload)) => deliver_audio(
                &out,
                &c,
                NetAudio {
                    header,
                    payload: datagram.slice_ref(payload),
                },
            ),
            Err(e) => {
                add(&c.audio_packets_malformed, 1);
                tracing::debug!("malformed audio datagram: {e}");
            }
        }
    }
}
