//! Synthetic checkpoints: a zoo-format `.pkl` with the real parameter names and
//! shapes of a catalog entry (its real widths) and seeded random values. For
//! benchmarks and full-size conversion tests without downloading the zoo.

use std::io::Write;

use d2serve_registry::ModelEntry;
use d2serve_registry::catalog::{Backbone, BoxHeadSpec, Neck, Norm, RoiHeadsKind};

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

/// Settings of the bottleneck blocks of one ResNet.
struct ResnetStyle {
    norm: Norm,
    groups: usize,
}

impl Plan {
    /// `blocks` bottleneck blocks under `prefix` (`….res3`); returns the output channels.
    #[allow(clippy::too_many_arguments)]
    fn res_stage(&mut self, prefix: &str, blocks: usize, inp: usize, bott: usize, out: usize, deform: bool, st: &ResnetStyle) {
        for b in 0..blocks {
            let pre = format!("{prefix}.{b}");
            if b == 0 {
                self.conv(&format!("{pre}.shortcut"), out, inp, 1, st.norm, false);
            }
            self.conv(&format!("{pre}.conv1"), bott, if b == 0 { inp } else { out }, 1, st.norm, false);
            if deform {
                self.conv(&format!("{pre}.conv2_offset"), 18, bott, 3, Norm::None, true);
            }
            self.conv(&format!("{pre}.conv2"), bott, bott / st.groups, 3, st.norm, false);
            self.conv(&format!("{pre}.conv3"), out, bott, 1, st.norm, false);
        }
    }

    /// RegNet stem and stages; returns each stage's output channels.
    fn regnet(&mut self, prefix: &str, spec: &Backbone) -> Vec<usize> {
        let Backbone::Regnet {
            stem_width,
            group_width,
            se_ratio,
            bottleneck_ratio,
            norm,
            stage_widths,
            stage_depths,
            ..
        } = spec
        else {
            unreachable!("checked by the caller")
        };
        let bn = |p: &mut Plan, name: String, c: usize| {
            p.add(format!("{name}.weight"), vec![c], Role::NormScale);
            p.add(format!("{name}.bias"), vec![c], Role::NormShift);
            p.add(format!("{name}.running_mean"), vec![c], Role::NormMean);
            p.add(format!("{name}.running_var"), vec![c], Role::NormVar);
        };
        let _ = norm;
        let stem = *stem_width as usize;
        self.add(format!("{prefix}.stem.conv.weight"), vec![stem, 3, 3, 3], Role::Weight);
        bn(self, format!("{prefix}.stem.bn"), stem);
        let mut w_in = stem;
        let mut outs = Vec::new();
        for (i, (&w_out, &depth)) in stage_widths.iter().zip(stage_depths).enumerate() {
            let w_out = w_out as usize;
            let w_b = (w_out as f64 * bottleneck_ratio).round() as usize;
            let groups = w_b / *group_width as usize;
            for b in 1..=depth as usize {
                let pre = format!("{prefix}.s{}.b{b}", i + 1);
                if b == 1 {
                    self.add(format!("{pre}.proj.weight"), vec![w_out, w_in, 1, 1], Role::Weight);
                    bn(self, format!("{pre}.bn"), w_out);
                }
                self.add(format!("{pre}.f.a.weight"), vec![w_b, w_in, 1, 1], Role::Weight);
                bn(self, format!("{pre}.f.a_bn"), w_b);
                self.add(format!("{pre}.f.b.weight"), vec![w_b, w_b / groups, 3, 3], Role::Weight);
                bn(self, format!("{pre}.f.b_bn"), w_b);
                if *se_ratio > 0.0 {
                    // regnet.py: the SE width comes from the block's input width.
                    let w_se = (w_in as f64 * se_ratio).round() as usize;
                    self.conv(&format!("{pre}.f.se.f_ex.0"), w_se, w_b, 1, Norm::None, true);
                    self.conv(&format!("{pre}.f.se.f_ex.2"), w_b, w_se, 1, Norm::None, true);
                }
                self.add(format!("{pre}.f.c.weight"), vec![w_out, w_b, 1, 1], Role::Weight);
                bn(self, format!("{pre}.f.c_bn"), w_out);
                w_in = w_out;
            }
            outs.push(w_out);
        }
        outs
    }

    /// Box head convs + fcs under `prefix`; returns the feature width.
    fn box_head(&mut self, prefix: &str, bh: &BoxHeadSpec, in_channels: usize) -> usize {
        let mut c = in_channels;
        for i in 1..=bh.num_conv {
            self.conv(&format!("{prefix}.conv{i}"), bh.conv_dim as usize, c, 3, bh.norm, true);
            c = bh.conv_dim as usize;
        }
        let mut width = c * (bh.pooler_resolution as usize).pow(2);
        for i in 1..=bh.num_fc {
            self.linear(&format!("{prefix}.fc{i}"), bh.fc_dim as usize, width);
            width = bh.fc_dim as usize;
        }
        width
    }

    fn box_predictor(&mut self, prefix: &str, width: usize, classes: usize, agnostic: bool) {
        self.linear(&format!("{prefix}.cls_score"), classes + 1, width);
        self.linear(&format!("{prefix}.bbox_pred"), if agnostic { 4 } else { 4 * classes }, width);
    }
}

/// Names and shapes of every parameter of `entry` at its real widths.
pub fn parameters(entry: &ModelEntry) -> Result<Vec<Param>, ConvertError> {
    let mut p = Plan { params: Vec::new() };
    let k = entry.num_classes as usize;
    let fpn = matches!(entry.neck, Neck::Fpn { .. });
    let bb = if fpn { "backbone.bottom_up" } else { "backbone" };

    // Backbone: the channels of each stage it outputs.
    let mut res5_head = None;
    let stage_channels = match &entry.backbone {
        Backbone::Resnet {
            depth,
            num_groups,
            width_per_group,
            norm,
            stem_out_channels,
            res2_out_channels,
            deform_on_per_stage,
            ..
        } => {
            let blocks = blocks_per_stage(*depth).ok_or_else(|| ConvertError::Unsupported(format!("depth {depth}")))?;
            let st = ResnetStyle { norm: *norm, groups: *num_groups as usize };
            let stem = *stem_out_channels as usize;
            p.conv(&format!("{bb}.stem.conv1"), stem, 3, 7, *norm, false);
            let (mut inp, mut out) = (stem, *res2_out_channels as usize);
            let mut bott = (*num_groups * *width_per_group) as usize;
            let mut channels = Vec::new();
            for (i, &n) in blocks.iter().enumerate() {
                if i == 3 && entry.neck == Neck::C4 {
                    // C4: res5 runs per ROI as the box head.
                    res5_head = Some(out);
                    p.res_stage("roi_heads.res5", n, inp, bott, out, false, &st);
                    break;
                }
                p.res_stage(&format!("{bb}.res{}", i + 2), n, inp, bott, out, deform_on_per_stage[i], &st);
                channels.push(out);
                inp = out;
                out *= 2;
                bott *= 2;
            }
            channels
        }
        Backbone::Regnet { .. } => p.regnet(bb, &entry.backbone),
    };

    // Neck: the channels the RPN and the ROI heads see.
    let feature_channels = match &entry.neck {
        Neck::Fpn { out_channels, norm, .. } => {
            let c = *out_channels as usize;
            for (i, &sc) in stage_channels.iter().enumerate() {
                let l = i + 2;
                p.conv(&format!("backbone.fpn_lateral{l}"), c, sc, 1, *norm, true);
                p.conv(&format!("backbone.fpn_output{l}"), c, c, 3, *norm, true);
            }
            c
        }
        Neck::C4 | Neck::Dc5 => *stage_channels.last().expect("stages"),
    };

    let rpn = "proposal_generator.rpn_head";
    for i in 0..entry.rpn.num_convs {
        let name = if entry.rpn.num_convs == 1 { format!("{rpn}.conv") } else { format!("{rpn}.conv.conv{i}") };
        p.conv(&name, feature_channels, feature_channels, 3, Norm::None, true);
    }
    let a = entry.rpn.anchor_sizes[0].len() * entry.rpn.aspect_ratios.len();
    p.conv(&format!("{rpn}.objectness_logits"), a, feature_channels, 1, Norm::None, true);
    p.conv(&format!("{rpn}.anchor_deltas"), 4 * a, feature_channels, 1, Norm::None, true);

    let agnostic = entry.roi_heads.cls_agnostic_bbox_reg;
    let mask_in = match entry.roi_heads.kind {
        RoiHeadsKind::Standard => {
            let width = p.box_head("roi_heads.box_head", &entry.box_head, feature_channels);
            p.box_predictor("roi_heads.box_predictor", width, k, agnostic);
            feature_channels
        }
        RoiHeadsKind::Cascade => {
            for s in 0..entry.roi_heads.bbox_reg_weights.len() {
                let width = p.box_head(&format!("roi_heads.box_head.{s}"), &entry.box_head, feature_channels);
                p.box_predictor(&format!("roi_heads.box_predictor.{s}"), width, k, agnostic);
            }
            feature_channels
        }
        RoiHeadsKind::Res5 => {
            let c = res5_head.ok_or_else(|| ConvertError::Unsupported("res5 ROI heads without a C4 ResNet".into()))?;
            p.box_predictor("roi_heads.box_predictor", c, k, agnostic);
            c
        }
    };

    let mh = &entry.mask_head;
    let mut c = mask_in;
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

/// (weight factor, bias range) of a parameter's layer, so that a synthesized model does
/// the work a trained one does (what benchmarks time): plain random box deltas push
/// every box to the clamp, NMS then keeps a handful of proposals and the box head runs
/// on those only. Near-zero deltas keep proposals at their anchors (RPN keeps its
/// 1000), and small class weights put detections above the 0.05 score threshold
/// (R50-FPN: 100 on astronaut at 800x800; Detectron2's reference run had 25).
/// `class_gain` scales the class weights per architecture (see [`class_logit_gain`]).
fn layer_scales(name: &str, class_gain: f32) -> (f32, f32) {
    if name.contains("anchor_deltas") || name.contains("bbox_pred") {
        (0.01, 0.001)
    } else if name.contains("cls_score") {
        (0.005 * class_gain, 0.1)
    } else if name.contains("conv2_offset") {
        // Deformable-conv offsets of about a pixel, mostly from the bias, as in trained
        // nets (Detectron2 initializes these weights to zero). Full-scale random weights
        // gave offsets of tens of pixels that flung samples off the map, and results so
        // sensitive that two float32 runs of one graph agreed on 7 of 100 detections.
        (0.001, 1.0)
    } else {
        (1.0, 0.1)
    }
}

/// The factor on catalog entry `key`'s class weights (on top of the base 0.005).
/// Random weights leave each architecture's box-head features at a different scale
/// (normalized heads and RegNets tiny, R101's large), so one class-weight factor gave
/// R50-FPN 100 detections at 320 px and ten other architectures none, and their heads
/// sat idle in benchmarks and comparisons. The gain is 0.66 / (the standard deviation
/// of the class logits, bias excluded, over the 1000 proposals of astronaut at 320 px
/// with gain 1), as measured in Detectron2 by scripts/d2_synth_calibration.py: every
/// architecture then spreads its logits as R50-FPN did before residual branches were
/// scaled down (0.66: 35 detections on astronaut at 800 px, Detectron2's reference run
/// had 25).
pub fn class_logit_gain(key: &str) -> f32 {
    MEASURED_CLASS_LOGIT_STD.iter().find(|(n, _)| key.rsplit('/').next() == Some(n)).map_or(1.0, |(_, std)| 0.66 / std)
}

// (last part of the catalog key, measured logit std at gain 1, with the residual branch
// scale below); cascade stages share one gain (from their mean spread).
const MEASURED_CLASS_LOGIT_STD: &[(&str, f32)] = &[
    ("mask_rcnn_R_50_FPN_3x", 0.2077),
    ("mask_rcnn_R_50_C4_1x", 0.1283),
    ("mask_rcnn_R_50_DC5_3x", 0.06166),
    ("mask_rcnn_R_50_FPN_100ep_LSJ", 0.03948),
    ("mask_rcnn_R_50_FPN_400ep_LSJ", 0.03948),
    ("mask_rcnn_R_101_FPN_100ep_LSJ", 0.02849),
    ("mask_rcnn_R_101_FPN_400ep_LSJ", 0.02849),
    ("mask_rcnn_regnetx_4gf_dds_FPN_100ep_LSJ", 0.002781),
    ("mask_rcnn_regnetx_4gf_dds_FPN_400ep_LSJ", 0.002781),
    ("mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ", 0.0005575),
    ("mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ", 0.0005575),
    ("mask_rcnn_R_50_FPN_1x", 0.226),
    ("mask_rcnn_R_101_FPN_1x", 0.2618),
    ("mask_rcnn_X_101_32x8d_FPN_1x", 0.005193),
    ("mask_rcnn_R_50_FPN", 0.1717),
    ("mask_rcnn_R_50_FPN_3x_dconv_c3-c5", 0.2667),
    ("cascade_mask_rcnn_R_50_FPN_3x", 0.2212),
    ("mask_rcnn_R_50_FPN_3x_gn", 0.002361),
    ("cascade_mask_rcnn_X_152_32x8d_FPN_IN5k_gn_dconv", 0.002514),
    ("mask_rcnn_R_101_FPN_3x", 0.2663),
    ("mask_rcnn_X_101_32x8d_FPN_3x", 0.005736),
];

const RESIDUAL_BRANCH_SCALE: f32 = 0.3;

fn values(param: &Param, class_gain: f32, rng: &mut Rng) -> Vec<f32> {
    let n: usize = param.shape.iter().product();
    // Fan-in scaled weights keep activations bounded through deep networks.
    let fan_in: usize = param.shape.iter().skip(1).product::<usize>().max(1);
    let (weight_factor, bias_range) = layer_scales(&param.name, class_gain);
    let scale = (3.0 / fan_in as f32).sqrt() * weight_factor;
    // A residual branch's last norm (scale and shift) at 0.3, as trained networks have
    // small residual branches: at full scale, deep random stacks are chaotic (R101: 31
    // of 730 proposals survived 1e-3 input noise in Detectron2, against 1000 of 1000 at
    // 0.3; scripts/d2_conditioning.py), so no two float32 implementations could agree.
    // The name also catches the third conv's norm of the 4conv1fc box heads (LSJ, GN),
    // which is not a residual branch; the class gains were measured with it so.
    let branch = if param.name.contains(".conv3.norm.") { RESIDUAL_BRANCH_SCALE } else { 1.0 };
    (0..n)
        .map(|_| {
            let u = rng.next_f32() * 2.0 - 1.0;
            match param.role {
                Role::Weight => u * scale,
                Role::Bias => u * bias_range,
                Role::NormShift => u * 0.1 * branch,
                Role::NormMean => u * 0.1,
                Role::NormScale => (1.0 + u * 0.1) * branch,
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
    let class_gain = class_logit_gain(&entry.key);
    for p in &params {
        unicode(w, &p.name).map_err(io)?;
        array(w, &p.shape, &values(p, class_gain, &mut rng)).map_err(io)?;
    }
    w.write_all(b"uu.").map_err(io)?; // SETITEMS (model), SETITEMS (root), STOP
    Ok(params.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A misspelt calibration name, or a new catalog entry without one, would silently
    /// leave its architecture at gain 1.
    #[test]
    fn calibration_names_and_catalog_entries_correspond() {
        let catalog = d2serve_registry::Catalog::embedded().unwrap();
        for (name, _) in MEASURED_CLASS_LOGIT_STD {
            let hits = catalog.models.iter().filter(|m| m.key.rsplit('/').next() == Some(name)).count();
            assert_eq!(hits, 1, "{name} names {hits} catalog entries");
        }
        for m in &catalog.models {
            assert!(MEASURED_CLASS_LOGIT_STD.iter().any(|(n, _)| m.key.rsplit('/').next() == Some(n)), "{}: no measured logit spread", m.key);
        }
        assert!(class_logit_gain("Misc/mask_rcnn_R_50_FPN_3x_gn") > 100.0);
    }
}
