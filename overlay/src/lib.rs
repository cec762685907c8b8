//! Text panels drawn over 0RGB pictures (minifb's pixel format): the viewer's stats and help
//! overlays and the server preview's status.

/// Draws text lines on a darkened panel in the top-left corner (8x8 font, doubled when the
/// picture is large enough).
pub fn draw_panel(pixels: &mut [u32], width: usize, height: usize, lines: &[String]) {
    use font8x8::legacy::BASIC_LEGACY;
    let scale = if width >= 560 { 2 } else { 1 };
    let line_h = 10 * scale;
    let panel_w = (lines.iter().map(|l| l.len()).max().unwrap_or(0) * 8 * scale + 16).min(width);
    let panel_h = (lines.len() * line_h + 12).min(height);
    let (x0, y0) = (4usize, 20usize.min(height.saturating_sub(panel_h)));
    for y in y0..(y0 + panel_h).min(height) {
        for px in &mut pixels[y * width + x0..y * width + (x0 + panel_w).min(width)] {
            // Darken to a quarter: the picture stays visible behind the text.
            *px = (*px >> 2) & 0x003F_3F3F;
        }
    }
    for (row, line) in lines.iter().enumerate() {
        let ty = y0 + 6 + row * line_h;
        for (col, ch) in line.chars().enumerate() {
            let glyph = BASIC_LEGACY.get(ch as usize).copied().unwrap_or([0; 8]);
            let tx = x0 + 8 + col * 8 * scale;
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits >> gx & 1 == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (x, y) = (tx + gx * scale + dx, ty + gy * scale + dy);
                            if x < width && y < height {
                                pixels[y * width + x] = 0x00FF_FFFF;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_draws_white_text_on_a_darkened_picture() {
        let (w, h) = (320, 180);
        let mut pixels = vec![0x0080_8080u32; w * h];
        draw_panel(&mut pixels, w, h, &["HELLO".to_string()]);
        assert!(pixels.contains(&0x00FF_FFFF), "text drawn");
        assert!(pixels.contains(&0x0020_2020), "panel darkened");
        assert_eq!(pixels[w * h - 1], 0x0080_8080, "rest untouched");
    }
}
