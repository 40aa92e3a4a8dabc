//! Visual overlay of instance-segmentation results (`zoo predict --overlay`):
//! masks blended in their class colour with a darker contour, box outlines, and
//! "label 0.93" tags in an embedded 5x8 bitmap font. Integer arithmetic only, so
//! the output is byte-for-byte deterministic.

/// One instance to draw. `mask_bits` covers [mask_x0, mask_x0+mask_w) x [mask_y0, mask_y0+mask_h) of the image, row-major.
pub struct Drawn<'a> {
    pub label: &'a str,
    pub score: f32,
    pub color: [u8; 3],
    pub bbox: [f32; 4],
    pub mask_x0: usize,
    pub mask_y0: usize,
    pub mask_w: usize,
    pub mask_h: usize,
    pub mask_bits: &'a [bool],
}

/// Classic 5-column LCD font for ASCII 32..=126, written out by hand: one byte per
/// column, bit 0 = top row, 8 rows so g/j/p/q/y get real descenders.
#[rustfmt::skip]
const FONT: [[u8; 5]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00], [0x00, 0x00, 0x5F, 0x00, 0x00], // ' ' !
    [0x00, 0x07, 0x00, 0x07, 0x00], [0x14, 0x7F, 0x14, 0x7F, 0x14], // " #
    [0x24, 0x2A, 0x7F, 0x2A, 0x12], [0x23, 0x13, 0x08, 0x64, 0x62], // $ %
    [0x36, 0x49, 0x55, 0x22, 0x50], [0x00, 0x05, 0x03, 0x00, 0x00], // & '
    [0x00, 0x1C, 0x22, 0x41, 0x00], [0x00, 0x41, 0x22, 0x1C, 0x00], // ( )
    [0x08, 0x2A, 0x1C, 0x2A, 0x08], [0x08, 0x08, 0x3E, 0x08, 0x08], // * +
    [0x00, 0x50, 0x30, 0x00, 0x00], [0x08, 0x08, 0x08, 0x08, 0x08], // , -
    [0x00, 0x60, 0x60, 0x00, 0x00], [0x20, 0x10, 0x08, 0x04, 0x02], // . /
    [0x3E, 0x51, 0x49, 0x45, 0x3E], [0x00, 0x42, 0x7F, 0x40, 0x00], // 0 1
    [0x42, 0x61, 0x51, 0x49, 0x46], [0x21, 0x41, 0x45, 0x4B, 0x31], // 2 3
    [0x18, 0x14, 0x12, 0x7F, 0x10], [0x27, 0x45, 0x45, 0x45, 0x39], // 4 5
    [0x3C, 0x4A, 0x49, 0x49, 0x30], [0x01, 0x71, 0x09, 0x05, 0x03], // 6 7
    [0x36, 0x49, 0x49, 0x49, 0x36], [0x06, 0x49, 0x49, 0x29, 0x1E], // 8 9
    [0x00, 0x36, 0x36, 0x00, 0x00], [0x00, 0x56, 0x36, 0x00, 0x00], // : ;
    [0x08, 0x14, 0x22, 0x41, 0x00], [0x14, 0x14, 0x14, 0x14, 0x14], // < =
    [0x00, 0x41, 0x22, 0x14, 0x08], [0x02, 0x01, 0x51, 0x09, 0x06], // > ?
    [0x32, 0x49, 0x79, 0x41, 0x3E], [0x7E, 0x11, 0x11, 0x11, 0x7E], // @ A
    [0x7F, 0x49, 0x49, 0x49, 0x36], [0x3E, 0x41, 0x41, 0x41, 0x22], // B C
    [0x7F, 0x41, 0x41, 0x22, 0x1C], [0x7F, 0x49, 0x49, 0x49, 0x41], // D E
    [0x7F, 0x09, 0x09, 0x09, 0x01], [0x3E, 0x41, 0x49, 0x49, 0x7A], // F G
    [0x7F, 0x08, 0x08, 0x08, 0x7F], [0x00, 0x41, 0x7F, 0x41, 0x00], // H I
    [0x20, 0x40, 0x41, 0x3F, 0x01], [0x7F, 0x08, 0x14, 0x22, 0x41], // J K
    [0x7F, 0x40, 0x40, 0x40, 0x40], [0x7F, 0x02, 0x0C, 0x02, 0x7F], // L M
    [0x7F, 0x04, 0x08, 0x10, 0x7F], [0x3E, 0x41, 0x41, 0x41, 0x3E], // N O
    [0x7F, 0x09, 0x09, 0x09, 0x06], [0x3E, 0x41, 0x51, 0x21, 0x5E], // P Q
    [0x7F, 0x09, 0x19, 0x29, 0x46], [0x46, 0x49, 0x49, 0x49, 0x31], // R S
    [0x01, 0x01, 0x7F, 0x01, 0x01], [0x3F, 0x40, 0x40, 0x40, 0x3F], // T U
    [0x1F, 0x20, 0x40, 0x20, 0x1F], [0x3F, 0x40, 0x38, 0x40, 0x3F], // V W
    [0x63, 0x14, 0x08, 0x14, 0x63], [0x07, 0x08, 0x70, 0x08, 0x07], // X Y
    [0x61, 0x51, 0x49, 0x45, 0x43], [0x00, 0x7F, 0x41, 0x41, 0x00], // Z [
    [0x02, 0x04, 0x08, 0x10, 0x20], [0x00, 0x41, 0x41, 0x7F, 0x00], // \ ]
    [0x04, 0x02, 0x01, 0x02, 0x04], [0x40, 0x40, 0x40, 0x40, 0x40], // ^ _
    [0x00, 0x01, 0x02, 0x04, 0x00], [0x20, 0x54, 0x54, 0x54, 0x78], // ` a
    [0x7F, 0x48, 0x44, 0x44, 0x38], [0x38, 0x44, 0x44, 0x44, 0x20], // b c
    [0x38, 0x44, 0x44, 0x48, 0x7F], [0x38, 0x54, 0x54, 0x54, 0x18], // d e
    [0x08, 0x7E, 0x09, 0x01, 0x02], [0x18, 0xA4, 0xA4, 0xA4, 0x7C], // f g
    [0x7F, 0x08, 0x04, 0x04, 0x78], [0x00, 0x44, 0x7D, 0x40, 0x00], // h i
    [0x40, 0x80, 0x84, 0x7D, 0x00], [0x7F, 0x10, 0x28, 0x44, 0x00], // j k
    [0x00, 0x41, 0x7F, 0x40, 0x00], [0x7C, 0x04, 0x18, 0x04, 0x78], // l m
    [0x7C, 0x08, 0x04, 0x04, 0x78], [0x38, 0x44, 0x44, 0x44, 0x38], // n o
    [0xFC, 0x24, 0x24, 0x24, 0x18], [0x18, 0x24, 0x24, 0x18, 0xFC], // p q
    [0x7C, 0x08, 0x04, 0x04, 0x08], [0x48, 0x54, 0x54, 0x54, 0x20], // r s
    [0x04, 0x3F, 0x44, 0x40, 0x20], [0x3C, 0x40, 0x40, 0x20, 0x7C], // t u
    [0x1C, 0x20, 0x40, 0x20, 0x1C], [0x3C, 0x40, 0x30, 0x40, 0x3C], // v w
    [0x44, 0x28, 0x10, 0x28, 0x44], [0x1C, 0xA0, 0xA0, 0xA0, 0x7C], // x y
    [0x44, 0x64, 0x54, 0x4C, 0x44], [0x00, 0x08, 0x36, 0x41, 0x00], // z {
    [0x00, 0x00, 0x7F, 0x00, 0x00], [0x00, 0x41, 0x36, 0x08, 0x00], // | }
    [0x08, 0x04, 0x08, 0x10, 0x08], // ~
];

const GLYPH_W: i64 = 5;
const GLYPH_H: i64 = 8;
/// Horizontal advance per character (glyph + 1 column gap), before scaling.
const ADVANCE: i64 = GLYPH_W + 1;

/// Glyph for `c`; anything outside printable ASCII renders as '?'.
fn glyph(c: char) -> [u8; 5] {
    let code = Some(c as u32).filter(|c| (32..=126).contains(c));
    FONT[code.unwrap_or(u32::from(b'?')) as usize - 32]
}

/// Width in pixels of `text` at `scale` (no trailing gap).
fn text_width(text: &str, scale: i64) -> i64 {
    (text.chars().count() as i64 * ADVANCE - 1).max(0) * scale
}

/// Mutable view of an RGB buffer; every write is clipped to the image.
struct Canvas<'a> {
    rgb: &'a mut [u8],
    h: i64,
    w: i64,
}

impl<'a> Canvas<'a> {
    fn new(rgb: &'a mut [u8], height: usize, width: usize) -> Self {
        let (h, w) = (height as i64, width as i64);
        Canvas { rgb, h, w }
    }
    fn at(&mut self, x: i64, y: i64) -> Option<&mut [u8]> {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            return None;
        }
        let i = ((y * self.w + x) * 3) as usize;
        self.rgb.get_mut(i..i + 3)
    }
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if let Some(p) = self.at(x, y) {
            p.copy_from_slice(&c);
        }
    }
    /// 50% blend in fixed point (rounded), so results never depend on float rounding.
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if let Some(p) = self.at(x, y) {
            for (v, &ck) in p.iter_mut().zip(&c) {
                *v = (u16::from(*v) + u16::from(ck)).div_ceil(2) as u8;
            }
        }
    }
    /// Fills [x0, x1) x [y0, y1), clipped.
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0.max(0)..y1.min(self.h) {
            for x in x0.max(0)..x1.min(self.w) {
                self.set(x, y, c);
            }
        }
    }
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, c: [u8; 3]) {
        for (i, ch) in text.chars().enumerate() {
            let gx = x + i as i64 * ADVANCE * scale;
            for (col, bits) in glyph(ch).iter().enumerate() {
                for row in 0..GLYPH_H {
                    if (bits >> row) & 1 == 1 {
                        let px = gx + col as i64 * scale;
                        let py = y + row * scale;
                        self.fill(px, py, px + scale, py + scale, c);
                    }
                }
            }
        }
    }
}

/// Contour colour: the class colour at 55% brightness.
fn darker(c: [u8; 3]) -> [u8; 3] {
    c.map(|v| (u16::from(v) * 141 / 256) as u8)
}

/// Black text on light backgrounds, white on dark (Rec. 601 luma, integer weights).
fn text_color(bg: [u8; 3]) -> [u8; 3] {
    let luma = 299 * u32::from(bg[0]) + 587 * u32::from(bg[1]) + 114 * u32::from(bg[2]);
    [if luma > 150_000 { 0 } else { 255 }; 3]
}

/// Float pixel coordinate to integer; `as` saturates and maps NaN to 0, so garbage boxes cannot panic.
fn px(v: f32) -> i64 {
    (v.floor() as i64).clamp(-1 << 40, 1 << 40)
}

fn draw_mask(cv: &mut Canvas<'_>, d: &Drawn<'_>, thick: i64) {
    if d.mask_x0 >= cv.w as usize || d.mask_y0 >= cv.h as usize {
        return; // entirely off-image (also keeps the i64 arithmetic below from overflowing)
    }
    let (mw, mh) = (d.mask_w.min(1 << 40) as i64, d.mask_h.min(1 << 40) as i64);
    let inside = |x: i64, y: i64| x >= 0 && y >= 0 && x < mw && y < mh;
    let on = |x, y| inside(x, y) && d.mask_bits.get((y * mw + x) as usize) == Some(&true);
    let edge = darker(d.color);
    let (ox, oy) = (d.mask_x0 as i64, d.mask_y0 as i64);
    for y in 0..mh.min(cv.h - oy) {
        for x in 0..mw.min(cv.w - ox) {
            if !on(x, y) {
                continue;
            }
            // A pixel within `thick` of an unset 4-neighbour is contour, else fill.
            let border = (1..=thick)
                .any(|t| !on(x - t, y) || !on(x + t, y) || !on(x, y - t) || !on(x, y + t));
            if border {
                cv.set(ox + x, oy + y, edge)
            } else {
                cv.blend(ox + x, oy + y, d.color)
            }
        }
    }
}

fn draw_box(cv: &mut Canvas<'_>, d: &Drawn<'_>, thick: i64) {
    let [x0, y0, x1, y1] = d.bbox.map(px);
    let (x1, y1) = (x1.max(x0 + 1), y1.max(y0 + 1));
    cv.fill(x0, y0, x1, y0 + thick, d.color);
    cv.fill(x0, y1 - thick, x1, y1, d.color);
    cv.fill(x0, y0, x0 + thick, y1, d.color);
    cv.fill(x1 - thick, y0, x1, y1, d.color);
}

fn draw_label(cv: &mut Canvas<'_>, d: &Drawn<'_>, scale: i64) {
    let text = format!("{} {:.2}", d.label, d.score);
    let pad = scale;
    let tw = text_width(&text, scale) + 2 * pad;
    let th = GLYPH_H * scale + 2 * pad;
    let [bx0, by0, _, _] = d.bbox.map(px);
    // Above the box when there is room, else just inside its top edge; shifted left
    // if it would run off the right side, and never above/left of the image.
    let y = if by0 - th >= 0 { by0 - th } else { by0.max(0) };
    let x = bx0.min(cv.w - tw).max(0);
    cv.fill(x, y, x + tw, y + th, d.color);
    cv.text(x + pad, y + pad, &text, scale, text_color(d.color));
}

/// Draw onto an RGB image (height x width x 3, row-major) in place. Instances are drawn lowest score first so the best ones end on top.
pub fn draw(rgb: &mut [u8], height: usize, width: usize, instances: &[Drawn<'_>]) {
    let needed = height.checked_mul(width).and_then(|n| n.checked_mul(3));
    if !matches!(needed, Some(n) if n <= rgb.len()) {
        return; // inconsistent buffer: draw nothing rather than panic
    }
    let mut order: Vec<usize> = (0..instances.len()).collect();
    order.sort_by(|&a, &b| instances[a].score.total_cmp(&instances[b].score)); // stable: ties keep input order
    let scale = if height.min(width) > 800 { 2 } else { 1 };
    let mut cv = Canvas::new(rgb, height, width);
    for &i in &order {
        draw_mask(&mut cv, &instances[i], scale);
        draw_box(&mut cv, &instances[i], scale);
    }
    // Labels last, so no mask or box covers a tag.
    for &i in &order {
        draw_label(&mut cv, &instances[i], scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: [u8; 3] = [220, 40, 40];

    /// A red "person 0.93"; `m` = [mask_x0, mask_y0, mask_w, mask_h].
    fn inst<'a>(bits: &'a [bool], bbox: [f32; 4], m: [usize; 4]) -> Drawn<'a> {
        let [mask_x0, mask_y0, mask_w, mask_h] = m;
        let (label, score, color, mask_bits) = ("person", 0.93, RED, bits);
        Drawn {
            label,
            score,
            color,
            bbox,
            mask_x0,
            mask_y0,
            mask_w,
            mask_h,
            mask_bits,
        }
    }
    /// Draws onto a black h x w image; returns it with a pixel accessor.
    fn run(h: usize, w: usize, d: &[Drawn<'_>]) -> impl Fn(usize, usize) -> [u8; 3] {
        let mut img = vec![0u8; h * w * 3];
        draw(&mut img, h, w, d);
        move |x, y| [0, 1, 2].map(|k| img[(y * w + x) * 3 + k])
    }

    #[test]
    fn mask_box_and_far_pixels() {
        let bits = vec![true; 20 * 20];
        let d = inst(&bits, [30.0, 40.0, 70.0, 80.0], [40, 50, 20, 20]);
        let ds = [d];
        let p = run(100, 120, &ds);
        assert!(p(50, 60)[0] > 50 && p(50, 60)[0] > p(50, 60)[1]); // mask interior
        assert_eq!((p(110, 5), p(5, 95)), ([0; 3], [0; 3])); // far away
        assert_eq!((p(30, 60), p(69, 79)), (RED, RED)); // box left edge, bottom-right corner
        assert_eq!(p(40, 60), darker(RED)); // mask contour
        assert_ne!(p(32, 35), [0; 3]); // label above the box
    }

    #[test]
    fn big_images_get_2x_tags() {
        let ds = [inst(&[], [100.0, 100.0, 300.0, 300.0], [0; 4])];
        let p = run(820, 900, &ds);
        assert_eq!((p(100, 80), p(100, 79)), (RED, [0; 3])); // 8*2 + 2*2 = 20 px tall
    }

    #[test]
    fn no_instances_no_change() {
        let mut img: Vec<u8> = (0..50 * 40 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let before = img.clone();
        draw(&mut img, 40, 50, &[]);
        assert_eq!(img, before);
    }

    #[test]
    fn label_at_top_border_stays_inside() {
        // Box at the top-right corner: the tag goes inside the box, shifted left to fit.
        let ds = [inst(&[], [70.0, 0.0, 80.0, 40.0], [0; 4])];
        let p = run(60, 80, &ds);
        assert_eq!(p(79, 0), RED);
        assert!((0..80).filter(|&x| p(x, 4) != [0; 3]).count() > 30);
    }

    #[test]
    fn out_of_bounds_is_clipped() {
        let bits = vec![true; 50 * 50];
        let bad = [-50.0, -20.0, 1e9, f32::NAN];
        let mut d = inst(&bits, bad, [10, 10, 50, 50]);
        (d.label, d.score) = ("héllo\u{1F600}", f32::NAN);
        let e = inst(&bits, [f32::INFINITY, 5.0, -3.0, 1e30], [29, 29, 50, 50]);
        let short = inst(&bits[..3], [0.0, 0.0, 5.0, 5.0], [0, 0, 50, 50]);
        let far = inst(&bits, [0.0; 4], [usize::MAX, 0, usize::MAX, 1]);
        let _ = run(30, 30, &[d, e, short, far]); // must not panic
    }

    #[test]
    fn text_sets_pixels() {
        let mut img = vec![0u8; 20 * 80 * 3];
        Canvas::new(&mut img, 20, 80).text(1, 1, "person 0.93", 1, [255; 3]);
        assert!(img.chunks(3).filter(|p| p[0] == 255).count() > 60);
        assert_eq!(text_width("person 0.93", 1), 65);
        assert_eq!(glyph('é'), glyph('?'));
    }

    /// Writes /tmp/overlay_demo.ppm for eyeballing (run with --ignored).
    #[test]
    #[ignore]
    fn demo() {
        let (h, w) = (240, 360);
        let shade = |i: usize| [90 + i % w / 6, 110 + i / w / 4, 130 + (i % w + i / w) / 10];
        let mut img: Vec<u8> = (0..h * w).flat_map(|i| shade(i).map(|v| v as u8)).collect();
        let specs = [
            ("person", 0.93, RED, [20, 2, 112, 94]),
            ("cat", 0.71, [255, 200, 40], [150, 70, 215, 135]),
            ("dog_(small)", 0.58, [40, 90, 200], [250, 120, 370, 245]),
        ];
        // Each mask: a disk inset 2 px into its box (so the dog runs off the image).
        let disk = |n: usize| -> Vec<bool> {
            let r = n as f32 / 2.0;
            let d = |i: usize| ((i % n) as f32 + 0.5 - r).hypot((i / n) as f32 + 0.5 - r);
            (0..n * n).map(|i| d(i) < r).collect()
        };
        let masks: Vec<_> = specs.iter().map(|s| disk(s.3[3] - s.3[1] - 4)).collect();
        let mut drawn = vec![];
        for (&(label, score, color, b), bits) in specs.iter().zip(&masks) {
            let n = b[3] - b[1] - 4;
            let mut d = inst(bits, b.map(|v| v as f32), [b[0] + 2, b[1] + 2, n, n]);
            (d.label, d.score, d.color) = (label, score, color);
            drawn.push(d);
        }
        draw(&mut img, h, w, &drawn);
        let mut cv = Canvas::new(&mut img, h, w);
        cv.text(4, 160, " !\"#$%&'()*+,-./0123456789:;<=>?@", 1, [0; 3]);
        cv.text(4, 172, "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`", 1, [0; 3]);
        cv.text(4, 184, "abcdefghijklmnopqrstuvwxyz{|}~", 1, [0; 3]);
        cv.text(4, 200, "bicycle 0.87 traffic light", 2, [255; 3]);
        let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
        out.extend_from_slice(&img);
        std::fs::write("/tmp/overlay_demo.ppm", out).unwrap();
    }
}
