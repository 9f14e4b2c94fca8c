//! The probe-rs layer without hardware: chip lookup, image parsing and fit checks,
//! probe selectors, and sessions on probe-rs's `FakeProbe` (through
//! `redrig_hardware::probe::testing`) taken as far as the fake goes.

use redrig_hardware::probe::*;
use sha2::{Digest, Sha256};

const NRF52840: &str = "nRF52840_xxAA";

fn nrf52840() -> ChipInfo {
    lookup_chip(NRF52840).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------- chips

#[test]
fn a_real_chip_has_its_flash_and_ram() {
    let chip = nrf52840();
    assert_eq!(chip.name, NRF52840);
    assert_eq!(chip.family, "nRF52 Series");
    assert_eq!(chip.cores.len(), 1);
    assert_eq!(chip.cores[0].kind, "Armv7em", "Cortex-M4F");
    assert_eq!(chip.flash[0].range, 0..0x10_0000, "1 MiB of flash at 0");
    assert_eq!(chip.main_flash().unwrap().range, 0..0x10_0000);
    // UICR is flash too; RAM is 256 KiB.
    assert!(chip
        .flash
        .iter()
        .any(|r| r.range == (0x1000_1000..0x1000_2000)));
    assert!(chip
        .ram
        .iter()
        .any(|r| r.range.end - r.range.start == 256 * 1024));
    // Case does not matter; probe-rs's lower-case `x` is a wildcard.
    assert_eq!(lookup_chip("nrf52840_XXAA").unwrap().name, NRF52840);
    assert_eq!(lookup_chip("nRF52840_QIAA").unwrap().name, NRF52840);
    let stm = lookup_chip("STM32F407VGTx").unwrap();
    assert_eq!(stm.family, "STM32F4 Series");
    assert_eq!(stm.main_flash().unwrap().range.start, 0x0800_0000);
}

#[test]
fn an_unknown_or_partial_chip_name_lists_close_names() {
    // A prefix is not enough, even when probe-rs itself would take it.
    let ChipError::Unknown { name, suggestions } = lookup_chip("nrf52840").unwrap_err() else {
        panic!()
    };
    assert_eq!(name, "nrf52840");
    assert_eq!(suggestions.first().map(String::as_str), Some(NRF52840));
    assert!(suggestions.len() <= MAX_SUGGESTIONS);
    let msg = lookup_chip("nrf52840").unwrap_err().to_string();
    assert!(
        msg.starts_with("unknown chip `nrf52840`") && msg.contains("did you mean nRF52840_xxAA"),
        "{msg}"
    );

    // A letter O for a zero: the STM32F407 parts come first.
    let ChipError::Unknown { suggestions, .. } = lookup_chip("stm32f4O7").unwrap_err() else {
        panic!()
    };
    assert!(suggestions.len() >= 3, "{suggestions:?}");
    assert!(
        suggestions
            .iter()
            .all(|s| s.to_ascii_uppercase().starts_with("STM32F407")),
        "{suggestions:?}"
    );

    // Nothing like it, empty, absurd: errors, no panic.
    for bad in [
        "",
        "   ",
        "qqqqqqqqqqqqqqqqqqqqqqqqq",
        "\u{0}\u{7f}nrf",
        &"x".repeat(10_000),
    ] {
        match lookup_chip(bad) {
            Err(ChipError::Unknown { name, .. }) => {
                assert!(name.chars().count() <= 80 && !name.chars().any(char::is_control))
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(suggest_chips("", 5).is_empty());
    assert_eq!(
        suggest_chips("nRF52840_xxAA", 1),
        vec![NRF52840.to_string()]
    );
}

// ---------------------------------------------------------------- images

/// One Intel HEX record with its checksum (two's complement of the byte sum).
fn hex_record(kind: u8, address: u16, data: &[u8]) -> String {
    let mut bytes = vec![data.len() as u8, (address >> 8) as u8, address as u8, kind];
    bytes.extend_from_slice(data);
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes.push(sum.wrapping_neg());
    format!(":{}", hex::encode_upper(bytes))
}

fn hex_file(records: &[String]) -> String {
    let mut s = records.join("\r\n");
    s.push_str("\r\n:00000001FF\r\n");
    s
}

const HEX: ImageOptions = ImageOptions {
    format: None,
    bin_base: None,
};

#[test]
fn intel_hex_records_become_merged_segments() {
    // A record as printed in the format's description, checksum 0x40.
    assert_eq!(
        hex_record(
            0,
            0x0100,
            &[
                0x21, 0x46, 0x01, 0x36, 0x01, 0x21, 0x47, 0x01, 0x36, 0x00, 0x7E, 0xFE, 0x09, 0xD2,
                0x19, 0x01
            ]
        ),
        ":10010000214601360121470136007EFE09D2190140"
    );
    let a: Vec<u8> = (0..16).collect();
    let b: Vec<u8> = (16..32).collect();
    let text = hex_file(&[
        hex_record(4, 0, &[0x00, 0x00]),
        hex_record(0, 0x1000, &a),
        hex_record(0, 0x1010, &b),
        // UICR at 0x10001000 through an extended linear address.
        hex_record(4, 0, &[0x10, 0x00]),
        hex_record(0, 0x1000, &[0xaa, 0x55]),
        hex_record(5, 0, &[0, 0, 0x10, 0x01]),
    ]);
    let img = parse_image(text.as_bytes(), Some("fw.hex"), &HEX).unwrap();
    assert_eq!(img.format, ImageFormat::IntelHex);
    assert_eq!(img.segments.len(), 2, "{:?}", img.segments);
    assert_eq!(img.segments[0].address, 0x1000);
    assert_eq!(img.segments[0].data, (0..32).collect::<Vec<u8>>());
    assert_eq!(img.segments[1].address, 0x1000_1000);
    assert_eq!(img.segments[1].data, vec![0xaa, 0x55]);
    assert_eq!(img.data_len(), 34);
    assert_eq!(img.sha256, hex::encode(Sha256::digest(text.as_bytes())));
    // Detected from the text alone, too.
    assert_eq!(
        parse_image(text.as_bytes(), None, &HEX).unwrap().format,
        ImageFormat::IntelHex
    );
    let fit = check_fits(&nrf52840(), &img).unwrap();
    assert_eq!(fit.bytes, 34);
    assert_eq!(fit.segments[1].regions[0].range, 0x1000_1000..0x1000_2000);
}

#[test]
fn broken_intel_hex_is_refused_with_the_line() {
    let good = hex_record(0, 0, &[1, 2, 3, 4]);
    // Last checksum digit changed.
    let mut bad_sum = good.clone();
    bad_sum.pop();
    bad_sum.push(if good.ends_with('0') { '1' } else { '0' });
    let cases: Vec<(String, &str)> = vec![
        (
            hex_file(&[good.clone(), bad_sum]),
            "line 2: invalid checksum",
        ),
        (format!("{good}\n"), "end-of-file record"),
        (hex_file(&[good.replace(':', ";")]), "line 1"),
        (hex_file(&[format!("{good}zz")]), "line 1"),
        (hex_file(&[":FF000000".into()]), "line 1"),
        (
            hex_file(&[good.clone(), hex_record(0, 2, &[9, 9])]),
            "overlaps",
        ),
    ];
    for (text, expect) in cases {
        let e = parse_image(text.as_bytes(), Some("fw.hex"), &HEX).unwrap_err();
        assert!(e.to_string().contains(expect), "{text:?}: {e}");
    }
    // Binary junk named .hex.
    let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    assert!(matches!(
        parse_image(&junk, Some("fw.hex"), &HEX),
        Err(ImageError::Hex { .. })
    ));
    // Scattered single bytes: bounded, refused past MAX_SEGMENTS pieces.
    let mut recs = Vec::new();
    for i in 0..=MAX_SEGMENTS as u32 {
        if i % 0x8000 == 0 {
            recs.push(hex_record(4, 0, &((i >> 15) as u16).to_be_bytes()));
        }
        recs.push(hex_record(0, ((i & 0x7fff) * 2) as u16, &[0xee]));
    }
    assert_eq!(
        parse_image(hex_file(&recs).as_bytes(), Some("fw.hex"), &HEX),
        Err(ImageError::TooManySegments { max: MAX_SEGMENTS })
    );
    // Only an end-of-file record: nothing to write.
    assert_eq!(
        parse_image(b":00000001FF\n", Some("fw.hex"), &HEX),
        Err(ImageError::Empty)
    );
}

/// A little-endian ARM ELF executable. Each segment is (physical address, bytes,
/// whether an allocated section lies in it).
fn elf(segments: &[(u64, Vec<u8>, bool)]) -> Vec<u8> {
    use object::elf::*;
    use object::write::elf::{FileHeader, ProgramHeader, SectionHeader, Writer};
    let mut buf = Vec::new();
    let mut w = Writer::new(object::Endianness::Little, false, &mut buf);
    w.reserve_file_header();
    w.reserve_program_headers(segments.len() as u32);
    let offsets: Vec<usize> = segments
        .iter()
        .map(|(_, d, _)| w.reserve(d.len(), 4))
        .collect();
    let names: Vec<_> = segments
        .iter()
        .filter(|s| s.2)
        .map(|_| w.add_section_name(b".text"))
        .collect();
    w.reserve_null_section_index();
    for _ in &names {
        w.reserve_section_index();
    }
    w.reserve_shstrtab_section_index();
    w.reserve_shstrtab();
    w.reserve_section_headers();
    w.write_file_header(&FileHeader {
        os_abi: 0,
        abi_version: 0,
        e_type: ET_EXEC,
        e_machine: EM_ARM,
        e_entry: 0,
        e_flags: 0,
    })
    .unwrap();
    w.write_align_program_headers();
    for ((addr, data, _), off) in segments.iter().zip(&offsets) {
        w.write_program_header(&ProgramHeader {
            p_type: PT_LOAD,
            p_flags: PF_R | PF_X,
            p_offset: *off as u64,
            p_vaddr: *addr,
            p_paddr: *addr,
            p_filesz: data.len() as u64,
            p_memsz: data.len() as u64,
            p_align: 4,
        });
    }
    for ((_, data, _), off) in segments.iter().zip(&offsets) {
        w.pad_until(*off);
        w.write(data);
    }
    w.write_shstrtab();
    w.write_null_section_header();
    let mut names = names.into_iter();
    for ((addr, data, with_section), off) in segments.iter().zip(&offsets) {
        if *with_section {
            w.write_section_header(&SectionHeader {
                name: names.next(),
                sh_type: SHT_PROGBITS,
                sh_flags: u64::from(SHF_ALLOC | SHF_EXECINSTR),
                sh_addr: *addr,
                sh_offset: *off as u64,
                sh_size: data.len() as u64,
                sh_link: 0,
                sh_info: 0,
                sh_addralign: 4,
                sh_entsize: 0,
            });
        }
    }
    w.write_shstrtab_section_header();
    buf
}

#[test]
fn elf_load_segments_are_placed_at_their_physical_address() {
    let code: Vec<u8> = (0..200u8).collect();
    let bytes = elf(&[
        (0x0000_0000, code.clone(), true),
        // A segment holding no section (like one mapping only headers) is skipped.
        (0x0000_8000, vec![7; 64], false),
        (0x1000_1000, vec![0xfe, 0xff, 0xff, 0xff], true),
    ]);
    let img = parse_image(&bytes, Some("watch.elf"), &HEX).unwrap();
    assert_eq!(img.format, ImageFormat::Elf);
    assert_eq!(img.segments.len(), 2, "{:?}", img.segments);
    assert_eq!(img.segments[0].address, 0);
    assert_eq!(img.segments[0].data, code);
    assert_eq!(img.segments[1].address, 0x1000_1000);
    assert_eq!(img.file_len, bytes.len() as u64);
    // The magic wins over a misleading name.
    assert_eq!(
        parse_image(&bytes, Some("watch.bin"), &HEX).unwrap().format,
        ImageFormat::Elf
    );
    let fit = check_fits(&nrf52840(), &img).unwrap();
    assert_eq!(fit.bytes, 204);
    assert_eq!(fit.segments.len(), 2);
}

#[test]
fn broken_elf_files_are_errors() {
    let good = elf(&[(0, vec![1; 64], true)]);
    // Cut anywhere: inside the header, the program headers, the data, the sections.
    for cut in [4, 20, 52, 60, 84, 100, good.len() - 1] {
        let r = parse_image(&good[..cut], Some("x.elf"), &HEX);
        assert!(
            matches!(r, Err(ImageError::Elf(_)) | Err(ImageError::Library(_))),
            "cut at {cut}: {r:?}"
        );
        assert!(
            !matches!(r, Err(ImageError::Library(_))),
            "the parser panicked: {r:?}"
        );
    }
    // Flip every byte of the headers in turn: never a panic.
    for i in 0..good.len().min(200) {
        let mut b = good.clone();
        b[i] ^= 0xff;
        let _ = parse_image(&b, Some("x.elf"), &HEX);
    }
    // A program header whose data runs far past the end of the file (e_phoff = 52;
    // p_filesz is the fifth word of the program header).
    let mut far = good.clone();
    far[68..72].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    let e = parse_image(&far, Some("x.elf"), &HEX).unwrap_err();
    assert!(e.to_string().contains("outside the file"), "{e}");
    // 65 program headers sharing one MiB of file bytes would copy 65 MiB: refused.
    let mib = 1024 * 1024;
    let mut segs = vec![(0u64, vec![3u8; mib], true)];
    segs.extend((1..65u64).map(|i| (i * mib as u64, vec![0u8; 4], false)));
    let mut shared = elf(&segs);
    let word = |b: &[u8], at: usize| b[at..at + 4].to_vec();
    let (p_offset, p_filesz) = (word(&shared, 52 + 4), word(&shared, 52 + 16));
    for i in 1..65 {
        let ph = 52 + 32 * i;
        shared[ph + 4..ph + 8].copy_from_slice(&p_offset);
        shared[ph + 16..ph + 20].copy_from_slice(&p_filesz);
        shared[ph + 20..ph + 24].copy_from_slice(&p_filesz);
    }
    assert!(matches!(
        parse_image(&shared, None, &HEX),
        Err(ImageError::TooLarge { .. })
    ));
    // The first header alone parses.
    let img = parse_image(&elf(&segs[..1]), None, &HEX).unwrap();
    assert_eq!(img.data_len(), mib as u64);
    // A segment without a section is skipped, and then nothing remains.
    let e = parse_image(&elf(&[(0, vec![1; 16], false)]), None, &HEX);
    assert!(
        matches!(e, Err(ImageError::Elf(ref m)) if m.contains("no loadable segment")),
        "{e:?}"
    );
}

#[test]
fn bin_images_need_a_base_address_and_formats_are_detected() {
    let data = vec![0x5a; 300];
    let opts = ImageOptions {
        format: None,
        bin_base: Some(0x2000),
    };
    let img = parse_image(&data, Some("fw.bin"), &opts).unwrap();
    assert_eq!(img.format, ImageFormat::Bin);
    assert_eq!(img.segments[0].range(), 0x2000..0x2000 + 300);
    assert_eq!(
        parse_image(&data, Some("fw.bin"), &HEX),
        Err(ImageError::NoBinBase)
    );
    // Unknown bytes are BIN only when a base address is given.
    assert_eq!(
        parse_image(&data, Some("fw.img"), &opts).unwrap().format,
        ImageFormat::Bin
    );
    let e = parse_image(&data, Some("fw.img"), &HEX).unwrap_err();
    assert!(e.to_string().contains("of fw.img"), "{e}");
    assert_eq!(
        parse_image(&[], Some("fw.bin"), &opts),
        Err(ImageError::Empty)
    );
    assert!(matches!(
        parse_image(
            &data,
            None,
            &ImageOptions {
                format: Some(ImageFormat::Bin),
                bin_base: Some(u64::MAX - 10)
            }
        ),
        Err(ImageError::AddressOverflow { .. })
    ));
    assert_eq!(ImageFormat::parse("IHEX"), Some(ImageFormat::IntelHex));
    assert_eq!(ImageFormat::parse("uf2"), None);
    assert_eq!(detect_format(b"\x7fELF\x01", None), Some(ImageFormat::Elf));
    assert_eq!(
        detect_format(b":00000001FF\n", None),
        Some(ImageFormat::IntelHex)
    );
    assert_eq!(detect_format(b":0000 hello", None), None);
}

#[test]
fn files_are_read_within_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("huge.bin");
    // Sparse: nothing is written, the size is what counts.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_IMAGE_BYTES + 1)
        .unwrap();
    let opts = ImageOptions {
        format: None,
        bin_base: Some(0),
    };
    assert_eq!(
        load_image(&big, &opts),
        Err(ImageError::TooLarge {
            len: MAX_IMAGE_BYTES + 1,
            max: MAX_IMAGE_BYTES
        })
    );
    let small = dir.path().join("fw.hex");
    let text = hex_file(&[hex_record(0, 0, &[1, 2, 3])]);
    std::fs::write(&small, &text).unwrap();
    let img = load_image(&small, &HEX).unwrap();
    assert_eq!(img.segments[0].data, vec![1, 2, 3]);
    assert_eq!(img.sha256, hex::encode(Sha256::digest(text.as_bytes())));
    let e = load_image(&dir.path().join("missing.hex"), &HEX).unwrap_err();
    assert!(matches!(e, ImageError::Io { .. }), "{e}");
}

// ---------------------------------------------------------------- fit

fn bin_at(address: u64, len: usize) -> Image {
    parse_image(
        &vec![0xa5; len],
        None,
        &ImageOptions {
            format: Some(ImageFormat::Bin),
            bin_base: Some(address),
        },
    )
    .unwrap()
}

#[test]
fn images_outside_flash_are_reported_segment_by_segment() {
    let chip = nrf52840();
    // Exactly the whole flash fits.
    assert_eq!(
        check_fits(&chip, &bin_at(0, 0x10_0000)).unwrap().bytes,
        0x10_0000
    );

    // 16 bytes past the end of the 1 MiB flash.
    let text = hex_file(&[
        hex_record(4, 0, &[0x00, 0x0f]),
        hex_record(0, 0xfff0, &[0; 32]),
    ]);
    let img = parse_image(text.as_bytes(), None, &HEX).unwrap();
    let FitError::Misfits {
        chip: name,
        misfits,
    } = check_fits(&chip, &img).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(name, NRF52840);
    assert_eq!(misfits.len(), 1);
    assert_eq!(misfits[0].index, 0);
    assert_eq!(misfits[0].range, 0xf_fff0..0x10_0010);
    let Misfit::Overflows { region, by } = &misfits[0].misfit else {
        panic!("{misfits:?}")
    };
    assert_eq!((region.range.clone(), *by), (0..0x10_0000, 16));
    let msg = check_fits(&chip, &img).unwrap_err().to_string();
    assert!(
        msg.contains("runs 16 bytes past the end of flash region"),
        "{msg}"
    );

    // In RAM.
    let FitError::Misfits { misfits, .. } =
        check_fits(&chip, &bin_at(0x2000_0000, 64)).unwrap_err()
    else {
        panic!()
    };
    assert!(
        matches!(misfits[0].misfit, Misfit::InRam { .. }),
        "{misfits:?}"
    );

    // Nowhere: the nearest flash region is UICR, ending at 0x10002000.
    let FitError::Misfits { misfits, .. } =
        check_fits(&chip, &bin_at(0x3000_0000, 64)).unwrap_err()
    else {
        panic!()
    };
    let Misfit::Nowhere { nearest, distance } = &misfits[0].misfit else {
        panic!("{misfits:?}")
    };
    assert_eq!(nearest.as_ref().unwrap().range, 0x1000_1000..0x1000_2000);
    assert_eq!(*distance, 0x3000_0000 - 0x1000_2000);

    // Two segments, the second bad: only it is reported, by index.
    let bytes = elf(&[(0, vec![1; 64], true), (0x000f_ffc0, vec![2; 128], true)]);
    let img = parse_image(&bytes, None, &HEX).unwrap();
    let FitError::Misfits { misfits, .. } = check_fits(&chip, &img).unwrap_err() else {
        panic!()
    };
    assert_eq!(misfits.len(), 1);
    assert_eq!(misfits[0].index, 1);
}

// ---------------------------------------------------------------- selectors

#[test]
fn probe_selectors_parse_and_print() {
    let s = ProbeSelector::parse("1366:1015:000683456789").unwrap();
    assert_eq!((s.vid, s.pid), (0x1366, 0x1015));
    assert_eq!(s.serial.as_deref(), Some("000683456789"));
    assert_eq!(s.to_string(), "1366:1015:000683456789");
    let s: ProbeSelector = "0D28:204".parse().unwrap();
    assert_eq!((s.vid, s.pid, s.serial.clone()), (0x0d28, 0x0204, None));
    assert_eq!(s.to_string(), "0d28:0204");
    // ESP USB-JTAG serials are MAC addresses.
    let s = ProbeSelector::parse("303a:1001:F4:12:FA:00:00:01").unwrap();
    assert_eq!(s.serial.as_deref(), Some("F4:12:FA:00:00:01"));
    assert_eq!(s.to_string().parse::<ProbeSelector>().unwrap(), s);
    for bad in [
        "",
        "1366",
        "1366:",
        "xyz1:1015",
        "13666:1015",
        "1366:1015:",
        "1366:1015:a b",
        "1366:1015:\u{1b}[2J",
        ":1015",
    ] {
        let e = ProbeSelector::parse(bad).unwrap_err();
        assert!(
            e.to_string().contains("expected VID:PID[:SERIAL]"),
            "{bad:?}: {e}"
        );
        assert!(!e.input.chars().any(char::is_control));
    }
    assert!(ProbeSelector::parse(&format!("1366:1015:{}", "9".repeat(500))).is_err());
}

#[test]
fn listing_and_opening_probes_without_one_is_a_rig_fault_not_a_panic() {
    let listed = list_probes();
    let nobody = ProbeSelector::parse("0000:0000:redrig-no-such-probe").unwrap();
    assert!(!listed.iter().any(|p| nobody.matches(p)));
    let e = open_probe(&nobody).unwrap_err();
    assert!(
        matches!(
            e,
            ProbeError::ProbeNotFound { .. } | ProbeError::ProbeOpen { .. }
        ),
        "{e:?}"
    );
    assert!(e.is_rig_fault() && !e.is_locked() && !e.is_config());
    assert!(
        e.to_string().contains("0000:0000:redrig-no-such-probe"),
        "{e}"
    );
    eprintln!("{e}");

    // The fit is checked before any probe is looked for.
    let chip = nrf52840();
    let e = flash_with_selector(
        &nobody,
        &chip,
        &bin_at(0x2000_0000, 4),
        FlashOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, ProbeError::DoesNotFit(_)) && e.is_config(),
        "{e:?}"
    );
    let e = flash_with_selector(
        &nobody,
        &chip,
        &bin_at(0, 4),
        FlashOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.is_rig_fault(), "{e:?}");
    let e = debug_access_with_selector(&nobody, &chip, 16).unwrap_err();
    assert!(e.is_rig_fault(), "{e:?}");
}

// ---------------------------------------------------------------- FakeProbe sessions

fn fake_nrf52(status: u32) -> Probe {
    testing::fake_nrf52(status)
}

type Brief = (FlashPhase, PhaseState, u64, Option<u64>);

fn flash_fake(
    probe: Probe,
    chip: &ChipInfo,
    image: &Image,
) -> (Result<FlashReport, ProbeError>, Vec<Brief>) {
    let mut seen = Vec::new();
    let r = flash(probe, chip, image, FlashOptions::default(), &mut |e| {
        seen.push((e.phase, e.state, e.done, e.total))
    });
    (r, seen)
}

#[test]
fn a_protected_nrf52_refuses_and_is_not_erased() {
    let chip = nrf52840();
    let (r, seen) = flash_fake(fake_nrf52(0), &chip, &bin_at(0x1000, 256));
    let e = r.unwrap_err();
    assert!(e.is_locked(), "{e:?}");
    assert!(e.to_string().contains("erase_all"), "{e}");
    assert_eq!(
        seen,
        vec![
            (FlashPhase::Attach, PhaseState::Started, 0, None),
            (FlashPhase::Attach, PhaseState::Failed, 0, None),
        ]
    );
    match debug_access(fake_nrf52(0), &chip, 256).unwrap() {
        DebugOutcome::Locked { detail } => assert!(detail.contains("erase_all"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_open_nrf52_attaches_and_the_fake_stops_at_the_erase() {
    let chip = nrf52840();
    // The fake core never reports the halt after a reset, so loading the flash
    // algorithm (at the start of the erase) times out: a failed phase, a rig fault.
    let (r, seen) = flash_fake(fake_nrf52(1), &chip, &bin_at(0x1000, 256));
    match r.unwrap_err() {
        e @ ProbeError::Failed {
            phase: FlashPhase::Erase,
            ..
        } => {
            assert!(e.is_rig_fault());
            assert!(e.to_string().contains("reset, and then halt"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seen,
        vec![
            (FlashPhase::Attach, PhaseState::Started, 0, None),
            (FlashPhase::Attach, PhaseState::Finished, 0, None),
            (FlashPhase::Erase, PhaseState::Started, 0, Some(4096)),
            (FlashPhase::Erase, PhaseState::Failed, 0, Some(4096)),
        ]
    );

    // The debug port reads the fake's flash (zeros); its DPIDR read is not
    // implemented in the fake, which leaves the IDCODE unavailable but the outcome
    // intact.
    match debug_access(fake_nrf52(1), &chip, 100).unwrap() {
        DebugOutcome::Open {
            idcode,
            address,
            flash_read,
        } => {
            assert_eq!(address, 0);
            assert_eq!(flash_read, vec![0u8; 100]);
            assert!(
                idcode.starts_with("unavailable (probe library failed"),
                "{idcode}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_panic_inside_probe_rs_becomes_an_error() {
    let chip = nrf52840();
    // A bare FakeProbe has no answers queued: probe-rs panics while attaching.
    let (r, seen) = flash_fake(testing::fake_without_answers(), &chip, &bin_at(0, 64));
    match r.unwrap_err() {
        e @ ProbeError::Library { .. } => {
            assert!(e.is_rig_fault());
            assert!(
                e.to_string()
                    .starts_with("probe library failed while attaching: "),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.last().map(|b| b.1), Some(PhaseState::Failed));
    let e = debug_access(testing::fake_without_answers(), &chip, 64).unwrap_err();
    assert!(
        matches!(e, ProbeError::Library { ref step, .. } if step == "attaching"),
        "{e:?}"
    );
}

#[test]
fn an_image_that_does_not_fit_never_reaches_the_probe() {
    let chip = nrf52840();
    // The bare fake would panic on attach; it is never touched.
    let (r, seen) = flash_fake(
        testing::fake_without_answers(),
        &chip,
        &bin_at(0xff000, 0x2000),
    );
    let e = r.unwrap_err();
    assert!(
        matches!(e, ProbeError::DoesNotFit(FitError::Misfits { .. })),
        "{e:?}"
    );
    assert!(e.is_config());
    assert!(seen.is_empty(), "{seen:?}");
}
