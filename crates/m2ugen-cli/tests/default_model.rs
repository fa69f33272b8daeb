//! `m2ugen default-model`: the page's bundled model (the fixtures converted, untrained) has every
//! component and both tokenizers, random EnCodec codebooks, replaces an old output whole, and a
//! missing input file is one line naming it and exit code 2, with nothing written.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use m2ugen_weights::{Manifest, StoredType};

#[test]
fn writes_every_component_and_tokenizer_with_random_codebooks() {
    let dir = scratch("default-model");
    let out = dir.join("model");
    // An old output is replaced whole.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stale.bin"), b"old").unwrap();
    let run = m2ugen(&[os("default-model"), os("--data"), data().as_os_str(), os("--reference"), fixture().as_os_str(), os("--musicgen"), musicgen_fixture().as_os_str(), os("--audioldm2"), audioldm2_fixture().as_os_str(), os("--out"), out.as_os_str()], None);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!out.join("stale.bin").exists(), "the old output is gone");
    assert!(!dir.join("model.partial").exists(), "the partial output was renamed");

    let manifest = Manifest::parse(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.model, "m2ugen-tiny-untrained");
    for c in ["llama", "mert", "vit", "vivit", "musicgen", "audioldm2"] {
        assert!(manifest.components.contains_key(c), "component {c}: {:?}", manifest.components.keys());
    }
    let tokenizer = manifest.tokenizer.as_ref().expect("the LLM's tokenizer");
    let text_tokenizer = manifest.text_tokenizer.as_ref().expect("T5's tokenizer");
    for f in [tokenizer, text_tokenizer] {
        assert_eq!(std::fs::metadata(out.join(&f.file)).unwrap().len(), f.bytes, "{}", f.file);
    }
    assert_eq!(std::fs::read(out.join(&text_tokenizer.file)).unwrap(), std::fs::read(t5_tokenizer()).unwrap());
    // CLAP's: byte-level RoBERTa, every text spelled in bytes within the fixture CLAP's 300 rows.
    let clap = manifest.clap_tokenizer.as_ref().expect("CLAP's tokenizer");
    let clap = tokenizers::Tokenizer::from_bytes(std::fs::read(out.join(&clap.file)).unwrap()).unwrap();
    assert_eq!(clap.get_vocab_size(true), 261);
    let ids = clap.encode("jazz é", true).unwrap().get_ids().to_vec();
    assert_eq!((ids.len(), ids[0], ids[ids.len() - 1]), (2 + 7, 0, 2), "<s>, 7 bytes, </s>: {ids:?}");
    assert!(ids[1..8].iter().all(|&id| (4..260).contains(&id)), "{ids:?}");
    // Its parts are AudioLDM 2's whole pipeline: the text side, the UNet, the VAE, HiFi-GAN.
    for part in ["clap", "t5", "projection", "gpt2", "unet", "vae", "vocoder"] {
        assert!(manifest.tensors.iter().any(|t| t.name.starts_with(&format!("audioldm2.{part}."))), "audioldm2.{part}.*");
    }

    // EnCodec's codebooks are random, not the fixture's zeros.
    let shards: Vec<Vec<u8>> = manifest.shards.iter().map(|s| std::fs::read(out.join(&s.file)).unwrap()).collect();
    let codebooks: Vec<_> = manifest.tensors.iter().filter(|t| t.name.starts_with("musicgen.audio_encoder.quantizer.") && t.name.ends_with(".codebook.embed")).collect();
    assert!(!codebooks.is_empty(), "EnCodec's codebooks are stored");
    for t in codebooks {
        assert_eq!(t.dtype, StoredType::F32, "{}", t.name);
        let bytes: Vec<u8> = t.pieces().into_iter().flat_map(|(shard, range)| shards[shard][range.start as usize..range.end as usize].to_vec()).collect();
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(values.len(), t.shape.iter().product::<usize>(), "{}", t.name);
        assert!(values.iter().any(|&v| v != 0.0), "{} is all zeros", t.name);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_data_file_is_one_line_and_exit_code_2() {
    let dir = scratch("default-model-missing");
    let out = dir.join("model");
    // --data without t5-tokenizer/ (the fixtures given by their own flags).
    let run = m2ugen(&[os("default-model"), os("--data"), dir.as_os_str(), os("--reference"), fixture().as_os_str(), os("--musicgen"), musicgen_fixture().as_os_str(), os("--out"), out.as_os_str()], None);
    let line = one_line_exit_2(&run);
    assert!(line.contains(&format!("{}: not found", dir.join("t5-tokenizer/tokenizer.json").display())), "{line}");
    // A reference fixture without its checkpoint.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = m2ugen(&[os("default-model"), os("--data"), empty.as_os_str(), os("--out"), out.as_os_str()], None);
    let line = one_line_exit_2(&run);
    assert!(line.contains(&format!("{}: not found", empty.join("reference-m2ugen/checkpoint.pth").display())), "{line}");
    assert!(!out.exists() && !dir.join("model.partial").exists(), "nothing written");
    let _ = std::fs::remove_dir_all(dir);
}
