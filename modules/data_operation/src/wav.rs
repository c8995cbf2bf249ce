//! A streaming RIFF/WAVE decoder: the header may arrive in pieces, samples are decoded
//! frame by frame from whatever bytes are there, and what cannot be decoded yet (a
//! partial header or frame) is left to the caller, who keeps it for the next run.

use serde::{Deserialize, Serialize};

/// Largest header (every chunk before `data`) accepted: past it the input is refused
/// rather than buffered without end.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// Sample encodings of PCM and IEEE-float WAV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    /// Unsigned 8-bit PCM (output uint8).
    U8,
    /// Signed 16-bit PCM (output int16).
    I16,
    /// Signed 24-bit PCM (output int32, sign-extended).
    I24,
    /// Signed 32-bit PCM (output int32).
    I32,
    /// IEEE float32 (output float32).
    F32,
}

impl SampleFormat {
    /// Bytes of one sample in the file.
    pub fn file_bytes(self) -> usize {
        match self {
            SampleFormat::U8 => 1,
            SampleFormat::I16 => 2,
            SampleFormat::I24 => 3,
            SampleFormat::I32 | SampleFormat::F32 => 4,
        }
    }

    /// Bytes of one sample in the output array.
    pub fn out_bytes(self) -> usize {
        match self {
            SampleFormat::U8 => 1,
            SampleFormat::I16 => 2,
            SampleFormat::I24 | SampleFormat::I32 | SampleFormat::F32 => 4,
        }
    }

    /// The Data Array dtype of the decoded samples.
    pub fn dtype(self) -> &'static str {
        match self {
            SampleFormat::U8 => "uint8",
            SampleFormat::I16 => "int16",
            SampleFormat::I24 | SampleFormat::I32 => "int32",
            SampleFormat::F32 => "float32",
        }
    }

    /// Name as ffmpeg spells it, recorded on the outputs.
    pub fn name(self) -> &'static str {
        match self {
            SampleFormat::U8 => "pcm_u8",
            SampleFormat::I16 => "pcm_s16le",
            SampleFormat::I24 => "pcm_s24le",
            SampleFormat::I32 => "pcm_s32le",
            SampleFormat::F32 => "pcm_f32le",
        }
    }
}

/// What a WAV header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WavFormat {
    /// Channels per frame.
    pub channels: u16,
    /// Frames per second.
    pub sample_rate: u32,
    /// Sample encoding.
    pub format: SampleFormat,
    /// Bytes of the `data` chunk still to come (`None`: unknown, e.g. a live recording
    /// whose header says 0 or 0xFFFFFFFF; everything that follows is samples).
    pub data_left: Option<u64>,
}

impl WavFormat {
    /// Bytes of one frame in the file.
    pub fn frame_bytes(&self) -> usize {
        self.format.file_bytes() * usize::from(self.channels)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the header at the start of `buf`: `Ok(None)` while more bytes are needed,
/// else the format and the header's length (where the samples start).
pub fn parse_header(buf: &[u8]) -> Result<Option<(WavFormat, usize)>, String> {
    if buf.len() < 12 {
        if !b"RIFF".starts_with(&buf[..buf.len().min(4)]) {
            return Err("not a WAV file: it does not start with RIFF".into());
        }
        return Ok(None);
    }
    if &buf[0..4] != b"RIFF" || &buf[8..12] != b"WAVE" {
        return Err("not a WAV file: no RIFF/WAVE header".into());
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u32, SampleFormat)> = None;
    loop {
        if at > MAX_HEADER_BYTES {
            return Err(format!(
                "the WAV header is longer than {MAX_HEADER_BYTES} bytes"
            ));
        }
        if buf.len() < at + 8 {
            return Ok(None);
        }
        let id = &buf[at..at + 4];
        let size = u32_at(buf, at + 4);
        let body = at + 8;
        if id == b"data" {
            let Some((channels, sample_rate, format)) = fmt else {
                return Err("the WAV data chunk comes before its fmt chunk".into());
            };
            let data_left = (size != 0 && size != u32::MAX).then_some(u64::from(size));
            return Ok(Some((
                WavFormat {
                    channels,
                    sample_rate,
                    format,
                    data_left,
                },
                body,
            )));
        }
        let size = usize::try_from(size).map_err(|_| "WAV chunk too large".to_owned())?;
        if size > MAX_HEADER_BYTES {
            return Err(format!(
                "the WAV chunk '{}' is longer than {MAX_HEADER_BYTES} bytes",
                String::from_utf8_lossy(id)
            ));
        }
        let padded = size + (size & 1);
        if id == b"fmt " {
            if buf.len() < body + size.max(16) {
                return Ok(None);
            }
            if size < 16 {
                return Err("the WAV fmt chunk is shorter than 16 bytes".into());
            }
            let mut tag = u16_at(buf, body);
            let channels = u16_at(buf, body + 2);
            let sample_rate = u32_at(buf, body + 4);
            let bits = u16_at(buf, body + 14);
            if tag == 0xFFFE {
                // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the real tag.
                if size < 40 {
                    return Err("the extensible WAV fmt chunk is shorter than 40 bytes".into());
                }
                tag = u16_at(buf, body + 24);
            }
            if channels == 0 {
                return Err("the WAV file declares 0 channels".into());
            }
            let format = match (tag, bits) {
                (1, 8) => SampleFormat::U8,
                (1, 16) => SampleFormat::I16,
                (1, 24) => SampleFormat::I24,
                (1, 32) => SampleFormat::I32,
                (3, 32) => SampleFormat::F32,
                _ => {
                    return Err(format!(
                        "WAV format {tag} with {bits} bits per sample is not supported \
                         (PCM 8/16/24/32-bit and float32 are)"
                    ))
                }
            };
            fmt = Some((channels, sample_rate, format));
        }
        at = body + padded;
    }
}

/// Decodes the whole frames of `data` (file encoding) into one output buffer per channel
/// (little-endian, the output dtype); returns how many bytes were used.
pub fn decode_frames(wav: &WavFormat, data: &[u8], channels: &mut [Vec<u8>]) -> usize {
    let fb = wav.frame_bytes();
    let n = usize::from(wav.channels);
    let frames = data.len() / fb;
    let sb = wav.format.file_bytes();
    /// Sample `c` of every frame, `S` bytes each, copied as it is.
    fn copy<const S: usize>(data: &[u8], fb: usize, c: usize, out: &mut [u8]) {
        for (o, f) in out.chunks_exact_mut(S).zip(data.chunks_exact(fb)) {
            o.copy_from_slice(&f[c * S..(c + 1) * S]);
        }
    }
    for (c, out) in channels.iter_mut().enumerate().take(n) {
        let start = out.len();
        out.resize(start + frames * wav.format.out_bytes(), 0);
        let dst = &mut out[start..];
        match wav.format {
            SampleFormat::I24 => {
                for (o, f) in dst.chunks_exact_mut(4).zip(data.chunks_exact(fb)) {
                    let s = &f[c * sb..(c + 1) * sb];
                    let v = i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8;
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
            SampleFormat::U8 => copy::<1>(data, fb, c, dst),
            SampleFormat::I16 => copy::<2>(data, fb, c, dst),
            SampleFormat::I32 | SampleFormat::F32 => copy::<4>(data, fb, c, dst),
        }
    }
    frames * fb
}

/// The decoder's state between runs: the format once the header is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoder {
    /// The header, once parsed.
    pub wav: Option<WavFormat>,
}

/// What one step of the decoder produced.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Per channel, the samples (output dtype, little-endian).
    pub channels: Vec<Vec<u8>>,
    /// Frames decoded.
    pub frames: u64,
    /// Bytes of the input used; the rest must be given again with more bytes after it.
    pub used: usize,
}

impl Decoder {
    /// Decodes what it can of `input` (the bytes following everything used so far).
    pub fn step(&mut self, input: &[u8]) -> Result<Decoded, String> {
        let mut used = 0;
        if self.wav.is_none() {
            match parse_header(input)? {
                None => return Ok(Decoded::default()),
                Some((wav, len)) => {
                    self.wav = Some(wav);
                    used = len;
                }
            }
        }
        let Some(wav) = self.wav.as_mut() else {
            return Ok(Decoded::default());
        };
        let mut data = &input[used..];
        if let Some(left) = wav.data_left {
            let left = usize::try_from(left).unwrap_or(usize::MAX);
            if data.len() > left {
                data = &data[..left];
            }
        }
        let mut channels = vec![Vec::new(); usize::from(wav.channels)];
        let n = decode_frames(wav, data, &mut channels);
        let frame_bytes = wav.frame_bytes();
        if let Some(left) = wav.data_left.as_mut() {
            *left -= n as u64;
            // Trailing chunks after the samples (LIST, id3): consumed, ignored.
            if *left < frame_bytes as u64 {
                used = input.len();
                *left = 0;
                return Ok(Decoded {
                    frames: (n / frame_bytes) as u64,
                    channels,
                    used,
                });
            }
        }
        Ok(Decoded {
            frames: (n / wav.frame_bytes()) as u64,
            channels,
            used: used + n,
        })
    }
}

/// A WAV file's header for `frames` frames (tests and the tutorial's sample).
pub fn header(channels: u16, sample_rate: u32, bits: u16, float: bool, data_bytes: u32) -> Vec<u8> {
    let block = channels * (bits / 8);
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&(if float { 3u16 } else { 1 }).to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_bytes.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn feed(dec: &mut Decoder, bytes: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut pending: Vec<u8> = Vec::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for chunk in bytes.chunks(piece) {
            pending.extend_from_slice(chunk);
            let d = dec.step(&pending).unwrap();
            if out.len() < d.channels.len() {
                out.resize(d.channels.len(), Vec::new());
            }
            for (o, c) in out.iter_mut().zip(&d.channels) {
                o.extend_from_slice(c);
            }
            pending.drain(..d.used);
        }
        out
    }

    #[test]
    fn int16_stereo_in_every_piece_size() {
        let frames: Vec<[i16; 2]> = (0..1000).map(|i| [i as i16 * 3 - 7, -(i as i16)]).collect();
        let mut file = header(2, 8000, 16, false, 4000);
        for f in &frames {
            file.extend_from_slice(&f[0].to_le_bytes());
            file.extend_from_slice(&f[1].to_le_bytes());
        }
        for piece in [1, 3, 7, 44, 45, 1000, 100_000] {
            let mut dec = Decoder::default();
            let out = feed(&mut dec, &file, piece);
            let left: Vec<u8> = frames.iter().flat_map(|f| f[0].to_le_bytes()).collect();
            let right: Vec<u8> = frames.iter().flat_map(|f| f[1].to_le_bytes()).collect();
            assert_eq!(out, vec![left, right], "piece {piece}");
            assert_eq!(dec.wav.unwrap().sample_rate, 8000);
        }
    }

    #[test]
    fn int24_sign_extends_and_u8_f32_pass_through() {
        let mut file = header(1, 100, 24, false, 6);
        file.extend_from_slice(&[0xff, 0xff, 0xff, 0x01, 0x00, 0x80]);
        let out = feed(&mut Decoder::default(), &file, 5);
        let want: Vec<u8> = [-1i32, -(1 << 23) + 1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(out, vec![want]);
        let mut file = header(3, 100, 32, true, 24);
        let vals: Vec<f32> = vec![0.5, -1.0, 2.0, 3.0, 4.0, -5.5];
        for v in &vals {
            file.extend_from_slice(&v.to_le_bytes());
        }
        let out = feed(&mut Decoder::default(), &file, 9);
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[2],
            [2.0f32, -5.5]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        );
        let mut file = header(1, 100, 8, false, 3);
        file.extend_from_slice(&[0, 128, 255]);
        assert_eq!(
            feed(&mut Decoder::default(), &file, 2),
            vec![vec![0, 128, 255]]
        );
    }

    #[test]
    fn refuses_what_it_cannot_decode() {
        assert!(parse_header(b"RIFX").is_err());
        assert!(parse_header(b"RIF").unwrap().is_none());
        let mut h = header(1, 100, 12, false, 0);
        assert!(parse_header(&h).is_err());
        h = header(0, 100, 16, false, 0);
        assert!(parse_header(&h).is_err());
        // Extra chunks before the samples are skipped.
        let mut file = header(1, 100, 16, false, 4);
        let data_at = file.len() - 8;
        let mut with_list = file[..data_at].to_vec();
        with_list.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00");
        with_list.extend_from_slice(&file[data_at..]);
        with_list.extend_from_slice(&[1, 0, 2, 0]);
        file = with_list;
        assert_eq!(
            feed(&mut Decoder::default(), &file, 1),
            vec![vec![1, 0, 2, 0]]
        );
    }
}
