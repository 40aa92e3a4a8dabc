//! Which architectures `--runtime auto` runs in OpenVINO: those where OpenVINO
//! was measured faster than ONNX Runtime on this project's reference machine AND
//! passed the parity contract on every fixture of the family (docs/BENCHMARKS.md,
//! "Runtimes", has the figures and the commands). Anything else stays in ONNX
//! Runtime, with the reason logged.

use d2serve_registry::spec::{Backbone, ModelSpec, Neck, Norm, RoiHeadsKind};

/// The architecture families the parity fixtures cover, keyed by what changes
/// the graph's operators (and so which kernels a runtime runs): the backbone's
/// convolutions (plain, grouped as in ResNeXt, RegNet's), deformable
/// convolutions, GroupNorm anywhere, the neck, cascade ROI heads.
pub fn family(spec: &ModelSpec) -> String {
    let (backbone, backbone_norm, deformable) = match &spec.backbone {
        Backbone::Resnet { num_groups, norm, deform_on_per_stage, .. } => {
            (if *num_groups > 1 { "resnext" } else { "resnet" }, norm, deform_on_per_stage.iter().any(|&d| d))
        }
        Backbone::Regnet { norm, .. } => ("regnet", norm, false),
    };
    let (neck, neck_norm) = match &spec.neck {
        Neck::Fpn { norm, .. } => ("fpn", Some(norm)),
        Neck::C4 => ("c4", None),
        Neck::Dc5 => ("dc5", None),
    };
    let group_norm = [Some(backbone_norm), neck_norm, Some(&spec.box_head.norm), Some(&spec.mask_head.norm)]
        .into_iter()
        .flatten()
        .any(|n| *n == Norm::GN);
    let mut family = backbone.to_string();
    if deformable {
        family.push_str("-deformable");
    }
    family.push('-');
    family.push_str(neck);
    if group_norm {
        family.push_str("-gn");
    }
    if spec.roi_heads.kind == RoiHeadsKind::Cascade {
        family.push_str("-cascade");
    }
    family
}

/// Why auto logs OpenVINO when it picks it.
pub const OPENVINO_MEASURED: &str = "OpenVINO measured faster for this architecture and passes its parity contract";

/// Ok when OpenVINO may run `spec` under `auto`; else why not.
pub fn openvino_verified(spec: &ModelSpec) -> Result<(), String> {
    let family = family(spec);
    if family.contains("-deformable") {
        return Err(format!("{family}: OpenVINO 2026.4 cannot read DeformConv (openvinotoolkit/openvino#24635)"));
    }
    match VERIFIED.iter().find(|(f, _)| *f == family) {
        Some(_) => Ok(()),
        None => Err(format!("{family}: not verified in OpenVINO (faster and within the parity contract)")),
    }
}

/// (family, evidence): filled from measurement only.
const VERIFIED: &[(&str, &str)] = &[];

#[cfg(test)]
mod tests {
    use super::*;
    use d2serve_registry::Catalog;

    fn family_of(name: &str) -> String {
        let catalog = Catalog::embedded().unwrap();
        family(&catalog.require(name).unwrap().spec())
    }

    #[test]
    fn families_follow_the_operators_a_model_uses() {
        assert_eq!(family_of("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x"), "resnet-fpn");
        assert_eq!(family_of("new_baselines/mask_rcnn_R_101_FPN_100ep_LSJ"), "resnet-fpn");
        // ResNeXt's grouped convolutions are other kernels: the LVIS model is not an R50-FPN.
        assert_eq!(family_of("LVISv0.5-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_1x"), "resnext-fpn");
        assert_eq!(family_of("Misc/mask_rcnn_R_50_FPN_3x_gn"), "resnet-fpn-gn");
        assert_eq!(family_of("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x"), "resnet-c4");
        assert_eq!(family_of("COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_3x"), "resnet-dc5");
        assert_eq!(family_of("Misc/cascade_mask_rcnn_R_50_FPN_3x"), "resnet-fpn-cascade");
        assert_eq!(family_of("Misc/cascade_mask_rcnn_X_152_32x8d_FPN_IN5k_gn_dconv"), "resnext-deformable-fpn-gn-cascade");
        assert_eq!(family_of("new_baselines/mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ"), "regnet-fpn");
    }

    #[test]
    fn auto_never_verifies_what_openvino_cannot_read() {
        let catalog = Catalog::embedded().unwrap();
        let dconv = catalog.require("Misc/mask_rcnn_R_50_FPN_3x_dconv_c3-c5").unwrap().spec();
        let why = openvino_verified(&dconv).unwrap_err();
        assert!(why.contains("DeformConv"), "{why}");
    }
}
