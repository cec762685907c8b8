//! Sound devices through cpal, shared by the server's microphones and the viewer's speakers:
//! which devices can be used, finding one by (part of) its name, and streams that hand the
//! caller `f32` samples whatever sample format the device uses.

use anyhow::{anyhow, Context as _};
use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{FromSample, SizedSample};

/// Capture or playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    /// What users call such a device.
    fn noun(self) -> &'static str {
        match self {
            Self::Input => "microphone",
            Self::Output => "audio output",
        }
    }
}

/// Whether a device can be used at all: ALSA lists a "null" device, and a "default" one even
/// on machines without a sound card; neither has a usable configuration there.
pub fn usable(device: &cpal::Device, direction: Direction) -> bool {
    let configured = match direction {
        Direction::Input => device.default_input_config().is_ok(),
        Direction::Output => device.default_output_config().is_ok(),
    };
    device.name().is_ok_and(|n| n != "null") && configured
}

fn devices(direction: Direction) -> Vec<cpal::Device> {
    let host = cpal::default_host();
    let all = match direction {
        Direction::Input => host.input_devices(),
        Direction::Output => host.output_devices(),
    };
    match all {
        Ok(d) => d.filter(|d| usable(d, direction)).collect(),
        Err(e) => {
            tracing::debug!("listing {} devices: {e}", direction.noun());
            Vec::new()
        }
    }
}

/// The names of the usable devices.
pub fn list(direction: Direction) -> Vec<String> {
    devices(direction)
        .iter()
        .filter_map(|d| d.name().ok())
        .collect()
}

/// The device whose name contains `name` (any case), or the default one.
pub fn find(direction: Direction, name: Option<&str>) -> anyhow::Result<cpal::Device> {
    let noun = direction.noun();
    let Some(wanted) = name else {
        let host = cpal::default_host();
        let default = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return default
            .filter(|d| usable(d, direction))
            .with_context(|| format!("no {noun} found"));
    };
    let lower = wanted.to_lowercase();
    let all = devices(direction);
    let names: Vec<String> = all.iter().filter_map(|d| d.name().ok()).collect();
    all.into_iter()
        .find(|d| d.name().is_ok_and(|n| n.to_lowercase().contains(&lower)))
        .ok_or_else(|| match names.is_empty() {
            true => anyhow!("no {noun} named {wanted:?}: no {noun} found"),
            false => anyhow!(
                "no {noun} named {wanted:?}; there are: {}",
                names.join(", ")
            ),
        })
}

fn input_as<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut on_samples: impl FnMut(&[f32]) + Send + 'static,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let mut as_f32 = Vec::new();
    device.build_input_stream(
        config,
        move |data: &[T], _| {
            as_f32.clear();
            as_f32.extend(data.iter().map(|&s| f32::from_sample_(s)));
            on_samples(&as_f32);
        },
        |e| tracing::warn!("microphone: {e}"),
        None,
    )
}

fn output_as<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut fill: impl FnMut(&mut [f32]) + Send + 'static,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample + FromSample<f32>,
{
    let mut as_f32 = Vec::new();
    device.build_output_stream(
        config,
        move |data: &mut [T], _| {
            as_f32.resize(data.len(), 0.0);
            fill(&mut as_f32);
            for (out, &s) in data.iter_mut().zip(&as_f32) {
                *out = T::from_sample_(s);
            }
        },
        |e| tracing::warn!("audio output: {e}"),
        None,
    )
}

/// A capture stream delivering interleaved `f32` samples, whatever the device's format.
pub fn input_stream(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: cpal::SampleFormat,
    on_samples: impl FnMut(&[f32]) + Send + 'static,
) -> Result<cpal::Stream, cpal::BuildStreamError> {
    use cpal::SampleFormat as F;
    match format {
        F::I8 => input_as::<i8>(device, config, on_samples),
        F::I16 => input_as::<i16>(device, config, on_samples),
        F::I32 => input_as::<i32>(device, config, on_samples),
        F::U8 => input_as::<u8>(device, config, on_samples),
        F::U16 => input_as::<u16>(device, config, on_samples),
        F::U32 => input_as::<u32>(device, config, on_samples),
        F::F32 => input_as::<f32>(device, config, on_samples),
        F::F64 => input_as::<f64>(device, config, on_samples),
        _ => Err(cpal::BuildStreamError::StreamConfigNotSupported),
    }
}

/// A playback stream that asks `fill` for interleaved `f32` samples, whatever the device's
/// format.
pub fn output_stream(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: cpal::SampleFormat,
    fill: impl FnMut(&mut [f32]) + Send + 'static,
) -> Result<cpal::Stream, cpal::BuildStreamError> {
    use cpal::SampleFormat as F;
    match format {
        F::I8 => output_as::<i8>(device, config, fill),
        F::I16 => output_as::<i16>(device, config, fill),
        F::I32 => output_as::<i32>(device, config, fill),
        F::U8 => output_as::<u8>(device, config, fill),
        F::U16 => output_as::<u16>(device, config, fill),
        F::U32 => output_as::<u32>(device, config, fill),
        F::F32 => output_as::<f32>(device, config, fill),
        F::F64 => output_as::<f64>(device, config, fill),
        _ => Err(cpal::BuildStreamError::StreamConfigNotSupported),
    }
}

/// An FFT resampler of one channel from `from` Hz to `to` Hz in blocks of `block` frames
/// (fixed on the side `fixed` says), or `None` when the rates are the same.
pub fn mono_resampler(
    from: u32,
    to: u32,
    block: usize,
    fixed: rubato::FixedSync,
) -> anyhow::Result<Option<rubato::Fft<f32>>> {
    anyhow::ensure!(from > 0 && to > 0, "a sample rate of 0 Hz");
    if from == to {
        return Ok(None);
    }
    rubato::Fft::<f32>::new(from as usize, to as usize, block, 1, fixed)
        .map(Some)
        .with_context(|| format!("cannot resample {from} Hz to {to} Hz"))
}
