//! Synthetic checkpoints: a zoo-format `.pkl` with the real parameter names and
//! shapes of a catalog entry (its real widths) and seeded random values. For
//! benchmarks and full-size conversion tests without downloading the zoo.

use std::io::Write;

use d2serve_registry::ModelEntry;
use d2serve_registry::catalog::{Backbone, Neck, Norm, RoiHeadsKind};

use crate::ConvertError;
use crate::resnet::blocks_per_stage;

/// What a parameter holds, so values can be plausible (a norm's variance is positive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    Weight,
    Bias,
    NormScale,
    NormShift,
    NormMean,
    NormVar,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

struct Plan {
    params: Vec<Param>,
}

impl Plan {
    fn add(&mut self, name: String, shape: Vec<usize>, role: Role) {
        self.params.push(Param { name, shape, role });
    }

    /// A conv `prefix.weight` with its norm or bias.
    fn conv(&mut self, prefix: &str, out: usize, per_group_in: usize, k: usize, norm: Norm, bias_without_norm: bool) {
        self.add(format!("{prefix}.weight"), vec![out, per_group_in, k, k], Role::Weight);
        match norm {
            Norm::FrozenBN | Norm::BN => {
                self.add(format!("{prefix}.norm.weight"), vec![out], Role::NormScale);
                self.add(format!("{prefix}.norm.bias"), vec![out], Role::NormShift);
                self.add(format!("{prefix}.norm.running_mean"), vec![out], Role::NormMean);
                self.add(format!("{prefix}.norm.running_var"), vec![out], Role::NormVar);
            }
            Norm::GN => {
                self.add(format!("{prefix}.norm.weight"), vec![out], Role::NormScale);
                self.add(format!("{prefix}.norm.bias"), vec![out], Role::NormShift);
            }
            Norm::None => {
                if bias_without_norm {
                    self.add(format!("{prefix}.bias"), vec![out], Role::Bias);
                }
            }
        }
    }

    fn linear(&mut self, prefix: &str, out: usize, inp: usize) {
        self.add(format!("{prefix}.weight"), vec![out, inp], Role::Weight);
        self.add(format!("{prefix}.bias"), vec![out], Role::Bias);
    }
}

/// Names and shapes of every parameter of `entry` at its real widths.
pub fn parameters(entry: &ModelEntry) -> Result<Vec<Param>, ConvertError> {
    let mut p = Plan { params: Vec::new() };
    let k = entry.num_classes as usize;
    let (Backbone::Resnet {
        depth,
        num_groups,
        width_per_group,
        norm,
        stem_out_channels,
        res2_out_channels,
        deform_on_per_stage,
        ..
    }, Neck::Fpn { out_channels: fpn_c, norm: fpn_norm, .. }) = (&entry.backbone, &entry.neck)
    else {
        return Err(ConvertError::Unsupported(format!("synthesizing {} (only ResNet-FPN models so far)", entry.key)));
    };
    if deform_on_per_stage.iter().any(|&d| d) || entry.roi_heads.kind != RoiHeadsKind::Standard {
        return Err(ConvertError::Unsupported(format!("synthesizing {} (deformable or cascade heads)", entry.key)));
    }
    let blocks = blocks_per_stage(*depth).ok_or_else(|| ConvertError::Unsupported(format!("depth {depth}")))?;
    let bb = "backbone.bottom_up";
    let stem = *stem_out_channels as usize;
    p.conv(&format!("{bb}.stem.conv1"), stem, 3, 7, *norm, false);
    let mut inp = stem;
    let mut out = *res2_out_channels as usize;
    let mut bott = (*num_groups * *width_per_group) as usize;
    let groups = *num_groups as usize;
    let mut stage_channels = Vec::new();
    for (i, &n) in blocks.iter().enumerate() {
        for b in 0..n {
            let pre = format!("{bb}.res{}.{b}", i + 2);
            if b == 0 {
                p.conv(&format!("{pre}.shortcut"), out, inp, 1, *norm, false);
            }
            p.conv(&format!("{pre}.conv1"), bott, if b == 0 { inp } else { out }, 1, *norm, false);
            p.conv(&format!("{pre}.conv2"), bott, bott / groups, 3, *norm, false);
            p.conv(&format!("{pre}.conv3"), out, bott, 1, *norm, false);
        }
        stage_channels.push(out);
        inp = out;
        out *= 2;
        bott *= 2;
    }
    let fpn_c = *fpn_c as usize;
    for (i, &c) in stage_channels.iter().enumerate() {
        let l = i + 2;
        p.conv(&format!("backbone.fpn_lateral{l}"), fpn_c, c, 1, *fpn_norm, true);
        p.conv(&format!("backbone.fpn_output{l}"), fpn_c, fpn_c, 3, *fpn_norm, true);
    }
    let rpn = "proposal_generator.rpn_head";
    for i in 0..entry.rpn.num_convs {
        let name = if entry.rpn.num_convs == 1 { format!("{rpn}.conv") } else { format!("{rpn}.conv.conv{i}") };
        p.conv(&name, fpn_c, fpn_c, 3, Norm::None, true);
    }
    let a = entry.rpn.anchor_sizes[0].len() * entry.rpn.aspect_ratios.len();
    p.conv(&format!("{rpn}.objectness_logits"), a, fpn_c, 1, Norm::None, true);
    p.conv(&format!("{rpn}.anchor_deltas"), 4 * a, fpn_c, 1, Norm::None, true);

    let bh = &entry.box_head;
    let mut c = fpn_c;
    for i in 1..=bh.num_conv {
        p.conv(&format!("roi_heads.box_head.conv{i}"), bh.conv_dim as usize, c, 3, bh.norm, true);
        c = bh.conv_dim as usize;
    }
    let mut width = c * (bh.pooler_resolution as usize).pow(2);
    for i in 1..=bh.num_fc {
        p.linear(&format!("roi_heads.box_head.fc{i}"), bh.fc_dim as usize, width);
        width = bh.fc_dim as usize;
    }
    p.linear("roi_heads.box_predictor.cls_score", k + 1, width);
    let d = if entry.roi_heads.cls_agnostic_bbox_reg { 4 } else { 4 * k };
    p.linear("roi_heads.box_predictor.bbox_pred", d, width);

    let mh = &entry.mask_head;
    let mut c = fpn_c;
    for i in 1..=mh.num_conv {
        p.conv(&format!("roi_heads.mask_head.mask_fcn{i}"), mh.conv_dim as usize, c, 3, mh.norm, true);
        c = mh.conv_dim as usize;
    }
    let m = mh.conv_dim as usize;
    p.add("roi_heads.mask_head.deconv.weight".into(), vec![c, m, 2, 2], Role::Weight);
    p.add("roi_heads.mask_head.deconv.bias".into(), vec![m], Role::Bias);
    let mk = if mh.cls_agnostic { 1 } else { k };
    p.conv("roi_heads.mask_head.predictor", mk, m, 1, Norm::None, true);
    Ok(p.params)
}

/// xorshift64*: deterministic values for a seed.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn values(param: &Param, rng: &mut Rng) -> Vec<f32> {
    let n: usize = param.shape.iter().product();
    // Fan-in scaled weights keep activations bounded through deep networks.
    let fan_in: usize = param.shape.iter().skip(1).product::<usize>().max(1);
    let scale = (3.0 / fan_in as f32).sqrt();
    (0..n)
        .map(|_| {
            let u = rng.next_f32() * 2.0 - 1.0;
            match param.role {
                Role::Weight => u * scale,
                Role::Bias | Role::NormShift | Role::NormMean => u * 0.1,
                Role::NormScale => 1.0 + u * 0.1,
                Role::NormVar => 1.0 + u * 0.5,
            }
        })
        .collect()
}

// ---- pickle writer (protocol 3, the layout numpy and pickle.dump produce) ----

fn unicode(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(b"X")?;
    w.write_all(&(s.len() as u32).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn int(w: &mut impl Write, v: i32) -> std::io::Result<()> {
    w.write_all(b"J")?;
    w.write_all(&v.to_le_bytes())
}

fn array(w: &mut impl Write, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    w.write_all(b"cnumpy.core.multiarray\n_reconstruct\n")?;
    w.write_all(b"cnumpy\nndarray\n")?;
    int(w, 0)?;
    w.write_all(&[0x85])?; // TUPLE1
    w.write_all(b"C\x01b")?; // SHORT_BINBYTES b'b'
    w.write_all(&[0x87, b'R'])?; // TUPLE3, REDUCE
    w.write_all(b"(")?; // state tuple
    int(w, 1)?;
    w.write_all(b"(")?;
    for &d in shape {
        int(w, d as i32)?;
    }
    w.write_all(b"t")?;
    w.write_all(b"cnumpy\ndtype\n")?;
    unicode(w, "f4")?;
    w.write_all(&[0x89, 0x88, 0x87, b'R'])?; // False, True, TUPLE3, REDUCE
    w.write_all(b"(")?;
    int(w, 3)?;
    unicode(w, "<")?;
    w.write_all(b"NNN")?;
    int(w, -1)?;
    int(w, -1)?;
    int(w, 0)?;
    w.write_all(b"tb")?; // TUPLE, BUILD (dtype state)
    w.write_all(&[0x89])?; // is_fortran False
    w.write_all(b"B")?;
    w.write_all(&((data.len() * 4) as u32).to_le_bytes())?;
    for v in data {
        w.write_all(&v.to_le_bytes())?;
    }
    w.write_all(b"tb") // TUPLE (state), BUILD (array)
}

/// Write a synthetic zoo-format checkpoint of `entry` to `w`.
pub fn write_checkpoint(entry: &ModelEntry, seed: u64, w: &mut impl Write) -> Result<usize, ConvertError> {
    let params = parameters(entry)?;
    let io = |e: std::io::Error| ConvertError::Io { path: "synthetic checkpoint".into(), source: e };
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    w.write_all(&[0x80, 3, b'}', b'(']).map_err(io)?;
    unicode(w, "__author__").map_err(io)?;
    unicode(w, &format!("d2serve zoo synth (random weights, seed {seed}) for {}", entry.key)).map_err(io)?;
    unicode(w, "model").map_err(io)?;
    w.write_all(b"}(").map_err(io)?;
    for p in &params {
        unicode(w, &p.name).map_err(io)?;
        array(w, &p.shape, &values(p, &mut rng)).map_err(io)?;
    }
    w.write_all(b"uu.").map_err(io)?; // SETITEMS (model), SETITEMS (root), STOP
    Ok(params.len())
}
