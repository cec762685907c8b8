//! Receiving media: every frame on its own unidirectional stream, every audio packet in a
//! datagram. Frames go to the decoder's queue (bounded), packets to the audio thread's.

use std::sync::{Arc, Mutex};

use crossbeam_channel::{Sender, TrySendError};
use streamsocket_proto::media::AudioHeader;
use streamsocket_proto::ErrorCode;
use streamsocket_transport::{read_frame, ReadError};

use crate::audio::NetAudio;
use crate::control::clock::ViewerClock;
use crate::metrics::Stats;
use crate::video::decoder::{DecoderInput, NetFrame};

/// Frames the decoder's queue holds; it has [`EVENT_ROOM`] more places for the events that
/// travel in order with the frames (a rendition confirmed, a resync).
pub const FRAME_QUEUE: usize = 32;
pub const EVENT_ROOM: usize = 8;

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
    stats: Arc<Mutex<Stats>>,
) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let first_byte_us = clock.now_us();
        let out = out.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let result = read_frame(&mut recv).await;
            let complete_us = clock.now_us();
            let mut s = stats.lock().expect("not poisoned");
            match result {
                Ok(f) => {
                    s.video.frames_received += 1;
                    s.video.bytes += f.payload.len() as u64;
                    s.broadcast.on_frame(f.header.keyframe);
                    if f.header.keyframe {
                        s.video.keyframes += 1;
                    }
                    let frame = NetFrame {
                        header: f.header,
                        payload: f.payload,
                        first_byte_us,
                        complete_us,
                    };
                    // The queue's last places are kept for the control's events.
                    if out.len() >= FRAME_QUEUE {
                        s.video.frames_dropped_decoder_busy += 1;
                    } else {
                        match out.try_send(DecoderInput::Frame(frame)) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => s.video.frames_dropped_decoder_busy += 1,
                            Err(TrySendError::Disconnected(_)) => {}
                        }
                    }
                }
                Err(ReadError::Malformed(e)) => {
                    s.video.frames_malformed += 1;
                    drop(s);
                    tracing::warn!("malformed frame stream: {e}");
                    let _ = recv.stop(quinn::VarInt::from_u32(
                        ErrorCode::MalformedMessage.to_u16() as u32,
                    ));
                }
                Err(ReadError::Stream(quinn::ReadError::Reset(_))) | Err(ReadError::Truncated) => {
                    s.video.frames_reset += 1;
                }
                Err(_) => {} // connection gone
            }
        });
    }
}

pub async fn receive_audio(
    conn: quinn::Connection,
    out: Sender<NetAudio>,
    stats: Arc<Mutex<Stats>>,
) {
    while let Ok(datagram) = conn.read_datagram().await {
        let mut s = stats.lock().expect("not poisoned");
        match AudioHeader::decode(&datagram) {
            Ok((header, payload)) => {
                s.audio.packets_received += 1;
                s.audio.bytes += payload.len() as u64;
                let packet = NetAudio {
                    header,
                    payload: datagram.slice_ref(payload),
                };
                if out.try_send(packet).is_err() {
                    s.audio.packets_dropped_busy += 1;
                }
            }
            Err(e) => {
                s.audio.packets_malformed += 1;
                tracing::debug!("malformed audio datagram: {e}");
            }
        }
    }
}
