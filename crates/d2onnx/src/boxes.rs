//! Box arithmetic in the graph, in Detectron2's float32 operation order:
//! `Box2BoxTransform.apply_deltas`, clipping, and the non-empty test.

use crate::builder::GraphBuilder;
use crate::layers::split4;
use crate::onnx::Attr;

/// `log(1000 / 16)` rounded to f32: the clamp on dw, dh before exp (Detectron2's `_DEFAULT_SCALE_CLAMP`).
pub fn scale_clamp() -> f32 {
    (1000.0f64 / 16.0).ln() as f32
}

/// The size of the (unpadded, resized) image as two 0-d f32 tensors.
#[derive(Debug, Clone)]
pub struct ImageSize {
    pub height: String,
    pub width: String,
}

/// Decode `deltas` (`[..., 4]`: dx, dy, dw, dh) against `boxes` (`[..., 4]`, broadcastable),
/// with the transform `weights`, then clip to `clip` if given. Returns `[..., 4]`.
pub fn decode(
    g: &mut GraphBuilder<'_>,
    name: &str,
    boxes: &str,
    deltas: &str,
    weights: [f32; 4],
    clip: Option<&ImageSize>,
) -> String {
    let [x0, y0, x1, y1] = split4(g, &format!("{name}.boxes"), boxes);
    let [d0, d1, d2, d3] = split4(g, &format!("{name}.deltas"), deltas);
    let half = g.scalar_f32(0.5);
    let widths = g.op("Sub", &format!("{name}.w"), &[&x1, &x0], vec![]);
    let heights = g.op("Sub", &format!("{name}.h"), &[&y1, &y0], vec![]);
    let hw = g.op("Mul", &format!("{name}.hw"), &[&half, &widths], vec![]);
    let hh = g.op("Mul", &format!("{name}.hh"), &[&half, &heights], vec![]);
    let cx = g.op("Add", &format!("{name}.cx"), &[&x0, &hw], vec![]);
    let cy = g.op("Add", &format!("{name}.cy"), &[&y0, &hh], vec![]);
    let div = |g: &mut GraphBuilder<'_>, d: &str, w: f32, n: &str| {
        let c = g.scalar_f32(w);
        g.op("Div", &format!("{name}.{n}"), &[d, &c], vec![])
    };
    let dx = div(g, &d0, weights[0], "dx");
    let dy = div(g, &d1, weights[1], "dy");
    let dw = div(g, &d2, weights[2], "dw");
    let dh = div(g, &d3, weights[3], "dh");
    let clamp = g.scalar_f32(scale_clamp());
    let dw = g.op("Min", &format!("{name}.dw_clamp"), &[&dw, &clamp], vec![]);
    let dh = g.op("Min", &format!("{name}.dh_clamp"), &[&dh, &clamp], vec![]);
    let pcx = g.op("Mul", &format!("{name}.dxw"), &[&dx, &widths], vec![]);
    let pcx = g.op("Add", &format!("{name}.pcx"), &[&pcx, &cx], vec![]);
    let pcy = g.op("Mul", &format!("{name}.dyh"), &[&dy, &heights], vec![]);
    let pcy = g.op("Add", &format!("{name}.pcy"), &[&pcy, &cy], vec![]);
    let ew = g.op("Exp", &format!("{name}.exp_dw"), &[&dw], vec![]);
    let pw = g.op("Mul", &format!("{name}.pw"), &[&ew, &widths], vec![]);
    let eh = g.op("Exp", &format!("{name}.exp_dh"), &[&dh], vec![]);
    let ph = g.op("Mul", &format!("{name}.ph"), &[&eh, &heights], vec![]);
    let hpw = g.op("Mul", &format!("{name}.half_pw"), &[&half, &pw], vec![]);
    let hph = g.op("Mul", &format!("{name}.half_ph"), &[&half, &ph], vec![]);
    let mut nx0 = g.op("Sub", &format!("{name}.x0"), &[&pcx, &hpw], vec![]);
    let mut ny0 = g.op("Sub", &format!("{name}.y0"), &[&pcy, &hph], vec![]);
    let mut nx1 = g.op("Add", &format!("{name}.x1"), &[&pcx, &hpw], vec![]);
    let mut ny1 = g.op("Add", &format!("{name}.y1"), &[&pcy, &hph], vec![]);
    if let Some(size) = clip {
        let zero = g.scalar_f32(0.0);
        nx0 = g.op("Clip", &format!("{name}.x0c"), &[&nx0, &zero, &size.width], vec![]);
        ny0 = g.op("Clip", &format!("{name}.y0c"), &[&ny0, &zero, &size.height], vec![]);
        nx1 = g.op("Clip", &format!("{name}.x1c"), &[&nx1, &zero, &size.width], vec![]);
        ny1 = g.op("Clip", &format!("{name}.y1c"), &[&ny1, &zero, &size.height], vec![]);
    }
    g.op("Concat", name, &[&nx0, &ny0, &nx1, &ny1], vec![("axis", Attr::Int(-1))])
}

/// Clip `[N, 4]` boxes to the image (Detectron2 `Boxes.clip`).
pub fn clip(g: &mut GraphBuilder<'_>, name: &str, boxes: &str, size: &ImageSize) -> String {
    let [x0, y0, x1, y1] = split4(g, &format!("{name}.split"), boxes);
    let zero = g.scalar_f32(0.0);
    let x0 = g.op("Clip", &format!("{name}.x0"), &[&x0, &zero, &size.width], vec![]);
    let y0 = g.op("Clip", &format!("{name}.y0"), &[&y0, &zero, &size.height], vec![]);
    let x1 = g.op("Clip", &format!("{name}.x1"), &[&x1, &zero, &size.width], vec![]);
    let y1 = g.op("Clip", &format!("{name}.y1"), &[&y1, &zero, &size.height], vec![]);
    g.op("Concat", name, &[&x0, &y0, &x1, &y1], vec![("axis", Attr::Int(-1))])
}

/// Boolean `[N]`: width > 0 and height > 0 (Detectron2 `Boxes.nonempty` with threshold 0).
pub fn nonempty(g: &mut GraphBuilder<'_>, name: &str, boxes: &str) -> String {
    let [x0, y0, x1, y1] = split4(g, &format!("{name}.split"), boxes);
    let w = g.op("Sub", &format!("{name}.w"), &[&x1, &x0], vec![]);
    let h = g.op("Sub", &format!("{name}.h"), &[&y1, &y0], vec![]);
    let zero = g.scalar_f32(0.0);
    let wp = g.op("Greater", &format!("{name}.wpos"), &[&w, &zero], vec![]);
    let hp = g.op("Greater", &format!("{name}.hpos"), &[&h, &zero], vec![]);
    let both = g.op("And", &format!("{name}.both"), &[&wp, &hp], vec![]);
    let axis = g.const_i64(&[-1]);
    g.op("Squeeze", name, &[&both, &axis], vec![])
}
