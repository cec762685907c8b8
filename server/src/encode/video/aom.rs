//! libaom in real-time mode as an [`Av1Backend`]: the AV1 encoder of browsers' real-time
//! stacks. No lag (`g_lag_in_frames = 0`): the packet of each picture comes out of the call
//! that took it. Constant bitrate with a short buffer, sized for live. Debian's `libaom-dev`
//! through the `aom-sys` bindings; everything unsafe about it stays in this module.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::os::raw::{c_int, c_uint};
use std::ptr;

use anyhow::{anyhow, bail};
use aom_sys as sys;

use super::{Av1Backend, Av1Packet, EncoderSettings, FrameTag, Packets};
use crate::capture::frame::RawFrame;

/// libaom's own settings. The defaults are the real-time tuning measured in
/// docs/BENCHMARKS.md.
#[derive(Debug, Clone, PartialEq)]
pub struct AomTuning {
    /// Speed (`cpu-used`), 0 (slowest) to 10 (fastest) in real-time mode.
    pub cpu_used: u8,
    /// Encode rows of superblocks in parallel (besides tiles).
    pub row_mt: bool,
    /// Adaptive quantisation: 0 off, 3 cyclic refresh (what libwebrtc uses).
    pub aq_mode: u32,
    /// Error-resilient frames: each decodable without the previous frames' entropy
    /// contexts. Costs bits; a viewer that skips to the next keyframe after a loss does not
    /// need them.
    pub error_resilient: bool,
    /// Quantizer range (0-63) the rate control may use.
    pub min_quantizer: u8,
    pub max_quantizer: u8,
    /// Largest keyframe, as a percentage of an average frame's size: a keyframe is a burst
    /// on the wire that every viewer of the rendition waits for.
    pub max_intra_bitrate_pct: u32,
    /// The rate control's buffer, milliseconds of the bitrate: how far one frame may
    /// overshoot before the next ones pay for it.
    pub buffer_ms: u32,
}

impl Default for AomTuning {
    fn default() -> Self {
        Self {
            cpu_used: 9,
            row_mt: true,
            aq_mode: 3,
            error_resilient: false,
            min_quantizer: 4,
            max_quantizer: 63,
            max_intra_bitrate_pct: 300,
            buffer_ms: 1000,
        }
    }
}

/// What libaom said about a failed call.
fn failure(
    ctx: *mut sys::aom_codec_ctx_t,
    what: &str,
    err: sys::aom_codec_err_t::Type,
) -> anyhow::Error {
    // SAFETY: both return static or context-owned C strings (or null for the detail).
    let (text, detail) = unsafe {
        let text = CStr::from_ptr(sys::aom_codec_err_to_string(err))
            .to_string_lossy()
            .into_owned();
        let detail = if ctx.is_null() {
            ptr::null()
        } else {
            sys::aom_codec_error_detail(ctx)
        };
        let detail =
            (!detail.is_null()).then(|| CStr::from_ptr(detail).to_string_lossy().into_owned());
        (text, detail)
    };
    match detail {
        Some(d) => anyhow!("libaom: {what}: {text} ({d})"),
        None => anyhow!("libaom: {what}: {text}"),
    }
}

fn check(
    ctx: *mut sys::aom_codec_ctx_t,
    what: &str,
    err: sys::aom_codec_err_t::Type,
) -> anyhow::Result<()> {
    if err == sys::aom_codec_err_t::AOM_CODEC_OK {
        Ok(())
    } else {
        Err(failure(ctx, what, err))
    }
}

/// A libaom encoder for one rendition.
pub struct AomEncoder {
    /// Boxed: libaom keeps its address.
    ctx: Box<sys::aom_codec_ctx_t>,
    /// The picture handed to libaom, allocated once (aligned, with libaom's strides).
    image: *mut sys::aom_image_t,
    width: usize,
    height: usize,
    fps: u32,
    first_capture_us: Option<u64>,
    last_pts: Option<i64>,
    /// Pictures sent and not yet returned, by presentation time.
    waiting: VecDeque<(i64, FrameTag)>,
}

// SAFETY: the context and image belong to this value alone and are used from one thread at a
// time (the rendition's encoder thread); libaom keeps no thread-local state for them.
unsafe impl Send for AomEncoder {}

impl AomEncoder {
    pub fn new(settings: &EncoderSettings, tuning: &AomTuning) -> anyhow::Result<Self> {
        let (w, h) = (settings.width, settings.height);
        if w % 2 != 0 || h % 2 != 0 || w == 0 || h == 0 {
            bail!("libaom: a 4:2:0 picture needs an even size, got {w}x{h}");
        }
        if tuning.cpu_used > 10
            || tuning.min_quantizer > tuning.max_quantizer
            || tuning.max_quantizer > 63
        {
            bail!(
                "libaom: speed is 0 to 10 and the quantizers 0 to 63 (min <= max), got speed {} and {}..{}",
                tuning.cpu_used,
                tuning.min_quantizer,
                tuning.max_quantizer
            );
        }
        // SAFETY: plain C calls with valid pointers; `cfg` is fully initialised by
        // aom_codec_enc_config_default before it is read.
        unsafe {
            let iface = sys::aom_codec_av1_cx();
            let mut cfg = std::mem::MaybeUninit::<sys::aom_codec_enc_cfg_t>::zeroed();
            check(
                ptr::null_mut(),
                "default real-time configuration",
                sys::aom_codec_enc_config_default(iface, cfg.as_mut_ptr(), sys::AOM_USAGE_REALTIME),
            )?;
            let mut cfg = cfg.assume_init();
            cfg.g_w = w as c_uint;
            cfg.g_h = h as c_uint;
            // One tick per frame of the rendition's rate; pictures the encoder never got
            // (skipped captures) leave gaps in the timestamps, so the rate control sees time.
            cfg.g_timebase = sys::aom_rational {
                num: 1,
                den: settings.fps as c_int,
            };
            cfg.g_threads = settings.threads.max(1) as c_uint;
            cfg.g_lag_in_frames = 0;
            cfg.g_pass = sys::aom_enc_pass::AOM_RC_ONE_PASS;
            cfg.g_error_resilient = if tuning.error_resilient {
                sys::AOM_ERROR_RESILIENT_DEFAULT as sys::aom_codec_er_flags_t
            } else {
                0
            };
            cfg.rc_end_usage = sys::aom_rc_mode::AOM_CBR;
            cfg.rc_target_bitrate = settings.bitrate_kbps.max(1);
            cfg.rc_min_quantizer = tuning.min_quantizer as c_uint;
            cfg.rc_max_quantizer = tuning.max_quantizer as c_uint;
            cfg.rc_undershoot_pct = 50;
            cfg.rc_overshoot_pct = 50;
            cfg.rc_buf_sz = tuning.buffer_ms;
            cfg.rc_buf_initial_sz = tuning.buffer_ms * 6 / 10;
            cfg.rc_buf_optimal_sz = tuning.buffer_ms * 6 / 10;
            // Never drop a picture to hold the rate: renditions and automatic quality do that.
            cfg.rc_dropframe_thresh = 0;
            cfg.rc_resize_mode = 0;
            cfg.kf_mode = sys::aom_kf_mode::AOM_KF_AUTO;
            cfg.kf_min_dist = 0;
            cfg.kf_max_dist = settings.keyframe_interval.clamp(1, u32::MAX as u64) as c_uint;

            let mut ctx: Box<sys::aom_codec_ctx_t> = Box::new(std::mem::zeroed());
            let ctx_ptr: *mut sys::aom_codec_ctx_t = &mut *ctx;
            check(
                ctx_ptr,
                "opening the encoder",
                sys::aom_codec_enc_init_ver(
                    &mut *ctx,
                    iface,
                    &cfg,
                    0,
                    sys::AOM_ENCODER_ABI_VERSION as c_int,
                ),
            )?;
            let image = sys::aom_img_alloc(
                ptr::null_mut(),
                sys::aom_img_fmt::AOM_IMG_FMT_I420,
                w as c_uint,
                h as c_uint,
                32,
            );
            let mut encoder = AomEncoder {
                ctx,
                image,
                width: w,
                height: h,
                fps: settings.fps.max(1),
                first_capture_us: None,
                last_pts: None,
                waiting: VecDeque::new(),
            };
            if image.is_null() {
                bail!("libaom: cannot allocate a {w}x{h} picture");
            }
            let tile_columns_log2 = (settings.tiles.max(1).ilog2()).min(6) as c_int;
            use sys::aome_enc_control_id as id;
            let controls: [(u32, c_int, &str); 12] = [
                (id::AOME_SET_CPUUSED, tuning.cpu_used as c_int, "speed"),
                (
                    id::AV1E_SET_ROW_MT,
                    tuning.row_mt as c_int,
                    "row multithreading",
                ),
                (id::AV1E_SET_TILE_COLUMNS, tile_columns_log2, "tile columns"),
                (
                    id::AV1E_SET_AQ_MODE,
                    tuning.aq_mode as c_int,
                    "adaptive quantisation",
                ),
                (
                    id::AOME_SET_MAX_INTRA_BITRATE_PCT,
                    tuning.max_intra_bitrate_pct as c_int,
                    "keyframe size limit",
                ),
                // Real-time choices, as libwebrtc makes them: no temporal filtering model,
                // no per-block quantizer search, no order hints (no frame reordering).
                // (libwebrtc also turns off the cost-table updates; with libaom 3.6 that
                // made cpu-used 8, and live cpu-used 9, write streams neither dav1d nor
                // libaom decodes: docs/BENCHMARKS.md, section 1.)
                (id::AV1E_SET_ENABLE_TPL_MODEL, 0, "temporal model"),
                (id::AV1E_SET_DELTAQ_MODE, 0, "delta quantizer"),
                (id::AV1E_SET_ENABLE_ORDER_HINT, 0, "order hints"),
                // The source's colours: BT.601, studio range (see crate::capture::frame::RawFrame),
                // signalled so that every decoder converts them back the same way.
                (
                    id::AV1E_SET_COLOR_PRIMARIES,
                    sys::aom_color_primaries::AOM_CICP_CP_BT_601 as c_int,
                    "colour primaries",
                ),
                (
                    id::AV1E_SET_TRANSFER_CHARACTERISTICS,
                    sys::aom_transfer_characteristics::AOM_CICP_TC_BT_601 as c_int,
                    "transfer characteristics",
                ),
                (
                    id::AV1E_SET_MATRIX_COEFFICIENTS,
                    sys::aom_matrix_coefficients::AOM_CICP_MC_BT_601 as c_int,
                    "matrix coefficients",
                ),
                (
                    id::AV1E_SET_COLOR_RANGE,
                    sys::aom_color_range::AOM_CR_STUDIO_RANGE as c_int,
                    "colour range",
                ),
            ];
            for (control, value, what) in controls {
                let err = sys::aom_codec_control(&mut *encoder.ctx, control as c_int, value);
                check(&mut *encoder.ctx, what, err)?;
            }
            Ok(encoder)
        }
    }

    /// The picture's presentation time in frame periods since the first picture: strictly
    /// increasing, with gaps where captures were skipped.
    fn pts_of(&mut self, capture_us: u64) -> i64 {
        let first = *self.first_capture_us.get_or_insert(capture_us);
        let periods = ((capture_us.saturating_sub(first) as u128 * self.fps as u128 + 500_000)
            / 1_000_000) as i64;
        let pts = match self.last_pts {
            Some(last) if periods <= last => last + 1,
            _ => periods,
        };
        self.last_pts = Some(pts);
        pts
    }

    /// Copies an I420 picture into libaom's image, row by row (its strides are aligned).
    fn fill_image(&mut self, raw: &RawFrame) {
        let (w, h) = (self.width, self.height);
        // SAFETY: the image was allocated for w x h I420, so each plane holds `rows` rows of
        // at least `width` bytes at its stride; the source planes hold exactly that.
        unsafe {
            let image = &mut *self.image;
            for (plane, (src, width, rows)) in [
                (&raw.y, w, h),
                (&raw.u, w / 2, h / 2),
                (&raw.v, w / 2, h / 2),
            ]
            .into_iter()
            .enumerate()
            {
                let stride = image.stride[plane] as usize;
                let base = image.planes[plane];
                for row in 0..rows {
                    ptr::copy_nonoverlapping(
                        src.as_ptr().add(row * width),
                        base.add(row * stride),
                        width,
                    );
                }
            }
        }
    }
}

impl Av1Backend for AomEncoder {
    fn encode(&mut self, raw: &RawFrame, force_keyframe: bool, tag: FrameTag) -> Packets {
        if raw.width != self.width || raw.height != self.height {
            bail!(
                "libaom: picture is {}x{}, the encoder expects {}x{}",
                raw.width,
                raw.height,
                self.width,
                self.height
            );
        }
        // fill_image copies whole planes: they must hold what the size says.
        let (luma, chroma) = (self.width * self.height, self.width * self.height / 4);
        if raw.y.len() < luma || raw.u.len() < chroma || raw.v.len() < chroma {
            bail!(
                "libaom: a {}x{} picture with planes of {}, {} and {} bytes",
                raw.width,
                raw.height,
                raw.y.len(),
                raw.u.len(),
                raw.v.len()
            );
        }
        self.fill_image(raw);
        let pts = self.pts_of(raw.capture_us);
        self.waiting.push_back((pts, tag));
        let flags = if force_keyframe {
            sys::AOM_EFLAG_FORCE_KF as sys::aom_enc_frame_flags_t
        } else {
            0
        };
        let ctx: *mut sys::aom_codec_ctx_t = &mut *self.ctx;
        let mut out = Vec::new();
        // SAFETY: the context is open and the image filled; packets returned by
        // aom_codec_get_cx_data stay valid until the next call into the encoder, and are
        // copied out before it.
        unsafe {
            check(
                ctx,
                "encoding a picture",
                sys::aom_codec_encode(ctx, self.image, pts, 1, flags),
            )?;
            let mut iter: sys::aom_codec_iter_t = ptr::null();
            loop {
                let packet = sys::aom_codec_get_cx_data(ctx, &mut iter);
                if packet.is_null() {
                    break;
                }
                if (*packet).kind != sys::aom_codec_cx_pkt_kind::AOM_CODEC_CX_FRAME_PKT {
                    continue;
                }
                let frame = (*packet).data.frame;
                let data = std::slice::from_raw_parts(frame.buf as *const u8, frame.sz).to_vec();
                // Pictures come back in order; with no lag, the packet is this picture's.
                let tag = loop {
                    match self.waiting.pop_front() {
                        Some((p, tag)) if p == frame.pts => break tag,
                        Some(_) => continue,
                        None => bail!(
                            "libaom returned a packet for a picture it was never given (pts {})",
                            frame.pts
                        ),
                    }
                };
                out.push(Av1Packet {
                    data,
                    keyframe: frame.flags & sys::AOM_FRAME_IS_KEY != 0,
                    tag,
                });
            }
        }
        Ok(out)
    }
}

impl Drop for AomEncoder {
    fn drop(&mut self) {
        // SAFETY: both were created in `new` and are released once, here.
        unsafe {
            sys::aom_codec_destroy(&mut *self.ctx);
            if !self.image.is_null() {
                sys::aom_img_free(self.image);
            }
        }
    }
}
