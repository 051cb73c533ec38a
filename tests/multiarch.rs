//! The six-platform image (issues 12 and 23).
//!
//! `make image-multiarch` writes `target/oci/config-reloader-sidecar.tar`, an OCI layout whose
//! `index.json` names one image index with a linux/amd64, arm64, arm/v7, ppc64le, s390x and
//! riscv64 image (`testkit::platforms`). These tests read it as a registry client would
//! (skopeo, then the blobs themselves, each checked against its digest), look inside each layer
//! at the ELF header of the binary (and its size: `testkit::SIZE_BUDGET_KIB` per architecture), and run
//! each foreign one under qemu-user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use testkit::platforms::{Platform, PLATFORMS};
use testkit::reloader::{command, path_str};
use testkit::TempDir;
use yaml_rust2::{Yaml, YamlLoader};

/// `make image-multiarch` writes it.
const ARCHIVE: &str = "target/oci/config-reloader-sidecar.tar";
/// Binary and image (per platform) size budget.
const SIZE_BUDGET: u64 = testkit::SIZE_BUDGET_KIB * 1024;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program args`, panics unless it exits 0 (naming the Debian package if it is missing),
/// returns stdout.
fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let package = match program {
        "skopeo" => "skopeo",
        p if p.starts_with("qemu-") => "qemu-user-static",
        _ => "coreutils/tar",
    };
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): `make deps` installs the Debian package {package}")
        });
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out.stdout
}

/// The archive unpacked into a temp dir (tar), with its blobs read by digest.
struct Layout {
    dir: TempDir,
}

impl Layout {
    fn open() -> Layout {
        let archive = root().join(ARCHIVE);
        assert!(
            archive.is_file(),
            "{} is missing: `make image-multiarch` writes it (`make test` does)",
            archive.display()
        );
        let dir = TempDir::new("oci-layout").expect("temp dir");
        run(
            "tar",
            &["-xf", path_str(&archive), "-C", path_str(dir.path())],
        );
        Layout { dir }
    }

    fn json(&self, rel: &str) -> Yaml {
        let path = self.dir.join(rel);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        json(&text)
    }

    /// The blob a descriptor points at, after checking its size and sha256 digest.
    fn blob(&self, descriptor: &Yaml) -> Vec<u8> {
        let digest = str_of(&descriptor["digest"]);
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("digest {digest}"));
        let path = self.dir.join(format!("blobs/sha256/{hex}"));
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
        assert_eq!(
            Some(bytes.len() as i64),
            descriptor["size"].as_i64(),
            "size of {digest}"
        );
        let sum = String::from_utf8(run("sha256sum", &[path_str(&path)])).expect("utf-8");
        assert_eq!(
            sum.split_whitespace().next(),
            Some(hex),
            "blob content does not match {digest}"
        );
        bytes
    }

    /// The image index `index.json` names.
    fn image_index(&self) -> (Yaml, Vec<u8>) {
        assert_eq!(
            str_of(&self.json("oci-layout")["imageLayoutVersion"]),
            "1.0.0"
        );
        let top = self.json("index.json");
        let entries = top["manifests"].as_vec().expect("index.json manifests");
        assert_eq!(
            entries.len(),
            1,
            "index.json names one image index: {entries:?}"
        );
        assert_eq!(
            str_of(&entries[0]["mediaType"]),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            str_of(&entries[0]["annotations"]["org.opencontainers.image.ref.name"]),
            env!("CARGO_PKG_VERSION")
        );
        let raw = self.blob(&entries[0]);
        (json(&String::from_utf8_lossy(&raw)), raw)
    }

    /// (config, the one file of the one layer: its name and bytes) of the manifest `d`.
    fn image(&self, d: &Yaml) -> (Yaml, String, Vec<u8>) {
        let manifest = json(&String::from_utf8_lossy(&self.blob(d)));
        assert_eq!(
            str_of(&manifest["mediaType"]),
            "application/vnd.oci.image.manifest.v1+json"
        );
        let config = json(&String::from_utf8_lossy(&self.blob(&manifest["config"])));
        let layers = manifest["layers"].as_vec().expect("layers");
        assert_eq!(
            layers.len(),
            1,
            "FROM scratch + one COPY is one layer: {layers:?}"
        );
        assert_eq!(
            str_of(&layers[0]["mediaType"]),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let layer = self.blob(&layers[0]);
        let size = layer.len() as u64;
        assert!(
            size <= SIZE_BUDGET,
            "{} layer is {size} bytes, over {} KiB",
            str_of(&config["architecture"]),
            testkit::SIZE_BUDGET_KIB
        );
        let tgz = self.dir.join("layer.tar.gz");
        fs::write(&tgz, &layer).expect("write layer");
        let list = String::from_utf8(run("tar", &["-tzf", path_str(&tgz)])).expect("utf-8");
        let files: Vec<&str> = list.lines().collect();
        assert_eq!(files.len(), 1, "the layer holds one file: {files:?}");
        let bin = run("tar", &["-xzOf", path_str(&tgz), files[0]]);
        (config, files[0].to_string(), bin)
    }
}

/// The index's manifests, checked to be exactly [`PLATFORMS`], in their order.
fn platforms(index: &Yaml) -> &[Yaml] {
    assert_eq!(
        str_of(&index["mediaType"]),
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_vec().expect("manifests");
    let seen: Vec<(&str, &str, Option<&str>)> = manifests
        .iter()
        .map(|m| {
            let p = &m["platform"];
            (
                str_of(&p["os"]),
                str_of(&p["architecture"]),
                p["variant"].as_str(),
            )
        })
        .collect();
    let want: Vec<(&str, &str, Option<&str>)> = PLATFORMS
        .iter()
        .map(|p| ("linux", p.arch, p.variant))
        .collect();
    assert_eq!(seen, want, "the index's platforms");
    manifests
}

fn json(text: &str) -> Yaml {
    // JSON is YAML 1.2 flow style: yaml-rust2 (already a dev-dependency) reads it.
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("not JSON: {e}: {text}"))
        .pop()
        .unwrap_or_else(|| panic!("empty JSON document"))
}

fn str_of(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {y:?}"))
}

/// (e_machine, has PT_INTERP) of an ELF file built for `p`, read from its headers (elf(5)) in
/// the class and byte order `p` has: e_machine at 18; e_phoff at 32 (64-bit) or 28 (32-bit);
/// e_phentsize and e_phnum at 54/56 or 42/44.
fn elf(bytes: &[u8], p: &Platform) -> (u16, bool) {
    assert!(
        bytes.len() >= 64 && bytes.starts_with(b"\x7fELF"),
        "not an ELF file"
    );
    let class = if p.class64 { 2 } else { 1 };
    let data = if p.big_endian { 2 } else { 1 };
    assert_eq!(
        (bytes[4], bytes[5]),
        (class, data),
        "{}: ELF class / byte order",
        p.arch
    );
    let word = |o: usize, n: usize| -> u64 {
        let b = &bytes[o..o + n];
        let fold = |acc: u64, x: &u8| acc << 8 | u64::from(*x);
        if p.big_endian {
            b.iter().fold(0, fold)
        } else {
            b.iter().rev().fold(0, fold)
        }
    };
    let (phoff, phentsize, phnum) = if p.class64 {
        (word(32, 8), word(54, 2), word(56, 2))
    } else {
        (word(28, 4), word(42, 2), word(44, 2))
    };
    // PT_INTERP = 3: a dynamic loader is needed, which a FROM scratch image does not have.
    let interp = (0..phnum).any(|i| word((phoff + i * phentsize) as usize, 4) == 3);
    (word(18, 2) as u16, interp)
}

#[test]
fn archive_is_one_index_of_the_six_linux_platforms() {
    let layout = Layout::open();
    let (index, raw) = layout.image_index();
    platforms(&index);
    // What a registry client resolves the archive to.
    let archive = format!("oci-archive:{}", root().join(ARCHIVE).display());
    let seen = run("skopeo", &["inspect", "--raw", &archive]);
    assert_eq!(
        seen.trim_ascii(),
        raw.trim_ascii(),
        "skopeo sees another index"
    );
    // The README's publish command, `skopeo copy --all`, to a local OCI layout instead of a
    // registry (none is reachable here): every platform arrives, under the same index digest.
    let copy = TempDir::new("oci-copy").expect("temp dir");
    let dest = format!("oci:{}:copied", copy.path().display());
    run("skopeo", &["copy", "--quiet", "--all", &archive, &dest]);
    let copied = run("skopeo", &["inspect", "--raw", &dest]);
    assert_eq!(
        copied.trim_ascii(),
        raw.trim_ascii(),
        "`skopeo copy --all` changed the index"
    );
    let blobs = fs::read_dir(copy.join("blobs/sha256"))
        .expect("copied blobs")
        .count();
    assert_eq!(
        blobs,
        1 + 3 * PLATFORMS.len(),
        "index + 6 × (manifest, config, layer)"
    );
}

#[test]
fn each_image_is_scratch_nonroot_same_labels_and_holds_its_own_static_binary() {
    let layout = Layout::open();
    let (index, _) = layout.image_index();
    let mut labels = Vec::new();
    for (p, d) in PLATFORMS.iter().zip(platforms(&index)) {
        let arch = p.arch;
        let (config, file, bin) = layout.image(d);
        assert_eq!(
            (
                str_of(&config["os"]),
                str_of(&config["architecture"]),
                config["variant"].as_str()
            ),
            ("linux", arch, p.variant)
        );
        let c = &config["config"];
        assert_eq!(str_of(&c["User"]), "65534:65534", "{arch} runs as nobody");
        assert_eq!(
            c["Entrypoint"],
            Yaml::Array(vec![Yaml::String("/config-reloader".into())])
        );
        assert_eq!(
            file, "config-reloader",
            "{arch}: the binary at /config-reloader and nothing else"
        );
        let (e_machine, interp) = elf(&bin, p);
        assert_eq!(
            e_machine, p.machine,
            "{arch} image holds an ELF for machine {e_machine}"
        );
        assert!(!interp, "{arch} binary wants a dynamic loader (PT_INTERP)");
        assert!(
            bin.len() as u64 <= SIZE_BUDGET,
            "{arch} binary is {} bytes, over {} KiB",
            bin.len(),
            testkit::SIZE_BUDGET_KIB
        );
        let built = p.binary();
        assert!(
            fs::read(&built).expect("read binary") == bin,
            "{arch} image does not hold {}: run `make image-multiarch`",
            built.display()
        );
        eprintln!("{arch}: binary {} bytes", bin.len());
        let l = &c["Labels"];
        assert_eq!(
            str_of(&l["org.opencontainers.image.title"]),
            "config-reloader-sidecar"
        );
        assert_eq!(
            str_of(&l["org.opencontainers.image.version"]),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            str_of(&l["org.opencontainers.image.licenses"]),
            "Apache-2.0"
        );
        labels.push(l.clone());
    }
    assert!(
        labels.iter().all(|l| *l == labels[0]),
        "every platform carries the same labels: {labels:?}"
    );
    assert_eq!(
        labels[0].as_hash().map(|h| h.len()),
        Some(5),
        "only the five OCI labels: {:?}",
        labels[0]
    );
}

#[test]
fn each_foreign_image_binary_prints_its_version_under_qemu() {
    let layout = Layout::open();
    let (index, _) = layout.image_index();
    for (p, d) in PLATFORMS.iter().zip(platforms(&index)) {
        if p.qemu.is_none() {
            continue;
        }
        let (_, _, bin) = layout.image(d);
        let path = layout.dir.join(format!("config-reloader-{}", p.arch));
        fs::write(&path, bin).expect("write binary");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        let (qemu, mut args) = p.runner(&path);
        args.push("--version".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = command(&qemu, &[], &args).output().expect("run qemu");
        assert!(out.status.success(), "{}: {out:?}", p.arch);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            concat!("config-reloader ", env!("CARGO_PKG_VERSION")),
            "{}",
            p.arch
        );
    }
}
