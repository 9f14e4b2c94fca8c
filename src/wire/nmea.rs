//! NMEA 0183 as a GNSS receiver writes it (`docs/virtual-hardware.md` §4).
//!
//! Building: [`sentence`] frames any sentence (address, fields, `*HH` checksum); the
//! per-type builders ([`rmc`], [`gga`], [`gsa`], [`gsv`], [`vtg`], [`zda`]) write the
//! fields the way common receivers do, for a fix and for no fix (empty fields, status
//! `V`, quality 0); [`Epoch`] puts one output cycle together in receiver order. The
//! builders take a [`Fix`] value, so a generator that moves the position along a route
//! only has to produce a new `Fix` per epoch.
//!
//! Multi-GNSS: every [`Satellite`] belongs to a [`System`]. An [`Epoch`] with talker
//! [`Talker::Gp`] is a GPS-only receiver (GLONASS and Galileo satellites are not
//! reported); with [`Talker::Gn`] it is a combined receiver in NMEA 4.10 mode (as a
//! u-blox M8): `GN` for RMC/VTG/GGA/ZDA, one `GNGSA` per system with its system id,
//! and `GPGSV` / `GLGSV` / `GAGSV` per system. [`epoch_bytes`] gives the size on the
//! wire for baud-rate budgets.
//!
//! Parsing: [`parse`] checks framing, length and checksum exactly as a receiving
//! device should, and [`Sentence`] gives typed access to fields for tests.
//!
//! Sentences are returned without the trailing CR LF; [`TERMINATOR`] is appended
//! when they are written to a line.

/// Longest sentence allowed by NMEA 0183, counting `$` and the CR LF.
pub const MAX_SENTENCE_LEN: usize = 82;

/// Line terminator of every sentence on the wire.
pub const TERMINATOR: &str = "\r\n";

/// Talker identifier (the first two characters of the address field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Talker {
    /// `GP`: GPS-only receiver.
    Gp,
    /// `GN`: combined GNSS solution.
    Gn,
    /// `GL`: GLONASS.
    Gl,
    /// `GA`: Galileo.
    Ga,
    /// `GB`: BeiDou (NMEA 4.11).
    Gb,
    /// `BD`: BeiDou (older receivers).
    Bd,
}

impl Talker {
    pub fn as_str(self) -> &'static str {
        match self {
            Talker::Gp => "GP",
            Talker::Gn => "GN",
            Talker::Gl => "GL",
            Talker::Ga => "GA",
            Talker::Gb => "GB",
            Talker::Bd => "BD",
        }
    }

    pub fn parse(s: &str) -> Option<Talker> {
        Some(match s {
            "GP" => Talker::Gp,
            "GN" => Talker::Gn,
            "GL" => Talker::Gl,
            "GA" => Talker::Ga,
            "GB" => Talker::Gb,
            "BD" => Talker::Bd,
            _ => return None,
        })
    }

    /// The satellite system a single-system talker stands for (`GP`, `GL`, `GA`);
    /// `None` for `GN` (combined) and for BeiDou, which [`System`] does not model.
    pub fn system(self) -> Option<System> {
        match self {
            Talker::Gp => Some(System::Gps),
            Talker::Gl => Some(System::Glonass),
            Talker::Ga => Some(System::Galileo),
            Talker::Gn | Talker::Gb | Talker::Bd => None,
        }
    }
}

/// A satellite navigation system. Ordered as receivers report them (GPS first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    Gps,
    Glonass,
    Galileo,
}

impl System {
    /// Every modelled system, in reporting order.
    pub const ALL: [System; 3] = [System::Gps, System::Glonass, System::Galileo];

    /// Talker of this system's own sentences (its GSV): `GP`, `GL`, `GA`.
    pub fn talker(self) -> Talker {
        match self {
            System::Gps => Talker::Gp,
            System::Glonass => Talker::Gl,
            System::Galileo => Talker::Ga,
        }
    }

    /// NMEA 4.10 GNSS system id (last field of GSA): 1 GPS, 2 GLONASS, 3 Galileo.
    pub fn nmea_id(self) -> u8 {
        match self {
            System::Gps => 1,
            System::Glonass => 2,
            System::Galileo => 3,
        }
    }
}

/// XOR of every byte between the start character and `*`.
pub fn checksum(payload: &str) -> u8 {
    payload.bytes().fold(0, |acc, b| acc ^ b)
}

/// Frame a sentence: `$<talker><kind>,<fields…>*HH` (no CR LF).
pub fn sentence<I, S>(talker: Talker, kind: &str, fields: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut payload = String::with_capacity(80);
    payload.push_str(talker.as_str());
    payload.push_str(kind);
    for f in fields {
        payload.push(',');
        payload.push_str(f.as_ref());
    }
    frame(&payload)
}

/// `$` + payload + `*HH` for an already assembled payload (address and fields).
pub fn frame(payload: &str) -> String {
    format!("${payload}*{:02X}", checksum(payload))
}

/// A position solution as the receiver reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// Degrees, north positive.
    pub lat: f64,
    /// Degrees, east positive.
    pub lon: f64,
    /// Altitude above mean sea level, metres.
    pub alt_m: f64,
    /// Geoid separation (WGS84 ellipsoid minus MSL), metres.
    pub geoid_sep_m: f64,
    /// Speed over ground, knots.
    pub speed_knots: f64,
    /// Course over ground, degrees true; `None` when not moving (written empty).
    pub course_deg: Option<f64>,
    pub pdop: f64,
    pub hdop: f64,
    pub vdop: f64,
}

impl Fix {
    /// A stationary 3D fix with typical open-sky dilution values.
    pub fn still(lat: f64, lon: f64, alt_m: f64) -> Fix {
        Fix {
            lat,
            lon,
            alt_m,
            geoid_sep_m: 0.0,
            speed_knots: 0.0,
            course_deg: None,
            pdop: 1.60,
            hdop: 0.90,
            vdop: 1.32,
        }
    }

    /// Whether the coordinates are finite and within ±90 / ±180 degrees.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && self.alt_m.is_finite()
            && self.lat.abs() <= 90.0
            && self.lon.abs() <= 180.0
    }
}

/// A satellite in view, as reported in GSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Satellite {
    pub system: System,
    /// Number as written in NMEA: GPS 1–32, GLONASS 65–88 (slot + 64), Galileo 1–36.
    pub prn: u8,
    pub elevation_deg: u8,
    pub azimuth_deg: u16,
    /// C/N0 in dB-Hz; `None` when not tracked (written empty).
    pub snr_db: Option<u8>,
}

/// A plausible open-sky GPS constellation of eight satellites, all tracked.
pub fn default_constellation() -> Vec<Satellite> {
    const SATS: [(u8, u8, u16, u8); 8] = [
        (2, 63, 292, 45),
        (5, 41, 61, 43),
        (12, 27, 127, 38),
        (13, 15, 182, 33),
        (15, 71, 214, 47),
        (18, 9, 318, 29),
        (24, 48, 158, 42),
        (29, 34, 23, 40),
    ];
    SATS.iter()
        .map(|&(prn, elevation_deg, azimuth_deg, snr)| Satellite {
            system: System::Gps,
            prn,
            elevation_deg,
            azimuth_deg,
            snr_db: Some(snr),
        })
        .collect()
}

/// UTC broken down for NMEA fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
}

impl UtcTime {
    /// From Unix milliseconds; `None` outside the years the `time` crate supports.
    pub fn from_unix_ms(ms: i64) -> Option<UtcTime> {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok()?;
        Some(UtcTime {
            year: t.year(),
            month: u8::from(t.month()),
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second(),
            millis: t.millisecond(),
        })
    }

    /// `hhmmss.ss`.
    pub fn nmea_time(&self) -> String {
        format!(
            "{:02}{:02}{:02}.{:02}",
            self.hour,
            self.minute,
            self.second,
            self.millis / 10
        )
    }

    /// `ddmmyy`.
    pub fn nmea_date(&self) -> String {
        format!(
            "{:02}{:02}{:02}",
            self.day,
            self.month,
            self.year.rem_euclid(100)
        )
    }
}

fn time_field(utc: Option<UtcTime>) -> String {
    utc.map(|u| u.nmea_time()).unwrap_or_default()
}

/// Degrees as `(d)ddmm.mmmmm` plus hemisphere. Five decimals of minutes resolve
/// 1.7e-7 degrees.
fn angle(value: f64, deg_digits: usize, pos: char, neg: char) -> (String, String) {
    const SCALE: u64 = 100_000;
    let hemi = if value < 0.0 { neg } else { pos };
    let total = (value.abs() * 60.0 * SCALE as f64).round() as u64;
    let deg = total / (60 * SCALE);
    let rem = total % (60 * SCALE);
    let (min, frac) = (rem / SCALE, rem % SCALE);
    (
        format!("{deg:0deg_digits$}{min:02}.{frac:05}"),
        hemi.to_string(),
    )
}

fn lat_fields(lat: f64) -> (String, String) {
    angle(lat, 2, 'N', 'S')
}

fn lon_fields(lon: f64) -> (String, String) {
    angle(lon, 3, 'E', 'W')
}

/// Satellites counted as used in the solution (tracked ones, at most 12).
fn used(satellites: &[Satellite]) -> Vec<u8> {
    satellites
        .iter()
        .filter(|s| s.snr_db.is_some())
        .map(|s| s.prn)
        .take(12)
        .collect()
}

/// A dilution of precision as receivers write it: two decimals, at most 99.99
/// (also for values that are not finite), never negative.
fn dop_field(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", v.clamp(0.0, 99.99))
    } else {
        "99.99".into()
    }
}

/// RMC: recommended minimum data. Time and date are written when known, even
/// without a fix, as receivers with a running clock do.
pub fn rmc(talker: Talker, utc: Option<UtcTime>, fix: Option<&Fix>) -> String {
    let date = utc.map(|u| u.nmea_date()).unwrap_or_default();
    let f: Vec<String> = match fix {
        Some(fx) => {
            let (la, ns) = lat_fields(fx.lat);
            let (lo, ew) = lon_fields(fx.lon);
            vec![
                time_field(utc),
                "A".into(),
                la,
                ns,
                lo,
                ew,
                format!("{:.3}", fx.speed_knots),
                fx.course_deg.map(|c| format!("{c:.2}")).unwrap_or_default(),
                date,
                String::new(),
                String::new(),
                "A".into(),
            ]
        }
        None => {
            let mut f = vec![time_field(utc), "V".into()];
            f.extend(std::iter::repeat_n(String::new(), 6));
            f.extend([date, String::new(), String::new(), "N".into()]);
            f
        }
    };
    sentence(talker, "RMC", f)
}

/// GGA: fix data. Quality 1 (autonomous) with a fix, 0 without.
pub fn gga(
    talker: Talker,
    utc: Option<UtcTime>,
    fix: Option<&Fix>,
    satellites: &[Satellite],
) -> String {
    let f: Vec<String> = match fix {
        Some(fx) => {
            let (la, ns) = lat_fields(fx.lat);
            let (lo, ew) = lon_fields(fx.lon);
            vec![
                time_field(utc),
                la,
                ns,
                lo,
                ew,
                "1".into(),
                format!("{:02}", used(satellites).len()),
                dop_field(fx.hdop),
                format!("{:.1}", fx.alt_m),
                "M".into(),
                format!("{:.1}", fx.geoid_sep_m),
                "M".into(),
                String::new(),
                String::new(),
            ]
        }
        None => {
            let mut f = vec![time_field(utc)];
            f.extend(std::iter::repeat_n(String::new(), 4));
            f.extend(["0".into(), "00".into(), "99.99".into()]);
            f.extend(std::iter::repeat_n(String::new(), 6));
            f
        }
    };
    sentence(talker, "GGA", f)
}

/// GSA: DOP and active satellites. Mode 3 (3D) with a fix, 1 without. Lists the
/// first 12 tracked satellites of `satellites`, whatever their system (a
/// single-system receiver passes only its own).
pub fn gsa(talker: Talker, fix: Option<&Fix>, satellites: &[Satellite]) -> String {
    sentence(talker, "GSA", gsa_fields(fix, &used(satellites)))
}

/// NMEA 4.10 multi-GNSS GSA: `GNGSA` listing the first 12 tracked satellites of
/// `system` only, with the solution's DOPs, and the system id (1 GPS, 2 GLONASS,
/// 3 Galileo) as an 18th field after VDOP, as u-blox M8 (NMEA 4.10 mode) and Quectel
/// receivers write it. A combined receiver writes one per system.
///
/// The system id field is accepted by gpsd (its regression logs `quectel-eg25-g-2`
/// and `nl2008u` carry it) and by the `nmea` crate 0.8, which reads it as
/// `GsaData::system_id` and rejects it only when it contradicts a single-system
/// talker (e.g. `GPGSA…,3`), which cannot happen with `GN`.
pub fn gsa_gnss(system: System, fix: Option<&Fix>, satellites: &[Satellite]) -> String {
    let own: Vec<Satellite> = satellites
        .iter()
        .filter(|s| s.system == system)
        .copied()
        .collect();
    let mut f = gsa_fields(fix, &used(&own));
    f.push(system.nmea_id().to_string());
    sentence(Talker::Gn, "GSA", f)
}

fn gsa_fields(fix: Option<&Fix>, prns: &[u8]) -> Vec<String> {
    let mut f: Vec<String> = vec!["A".into()];
    match fix {
        Some(fx) => {
            f.push("3".into());
            for i in 0..12 {
                f.push(prns.get(i).map(|p| format!("{p:02}")).unwrap_or_default());
            }
            f.extend([dop_field(fx.pdop), dop_field(fx.hdop), dop_field(fx.vdop)]);
        }
        None => {
            f.push("1".into());
            f.extend(std::iter::repeat_n(String::new(), 12));
            f.extend(["99.99".into(), "99.99".into(), "99.99".into()]);
        }
    }
    f
}

/// GSV: satellites in view, four per sentence (at most 9 sentences, 36 satellites).
/// With none in view it is the single sentence `GSV,1,1,00`.
pub fn gsv(talker: Talker, satellites: &[Satellite]) -> Vec<String> {
    let sats = &satellites[..satellites.len().min(36)];
    if sats.is_empty() {
        return vec![sentence(talker, "GSV", ["1", "1", "00"])];
    }
    let total = sats.len().div_ceil(4);
    sats.chunks(4)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = vec![
                total.to_string(),
                (i + 1).to_string(),
                format!("{:02}", sats.len()),
            ];
            for s in chunk {
                f.push(format!("{:02}", s.prn));
                f.push(format!("{:02}", s.elevation_deg.min(90)));
                f.push(format!("{:03}", s.azimuth_deg % 360));
                f.push(
                    s.snr_db
                        .map(|v| format!("{:02}", v.min(99)))
                        .unwrap_or_default(),
                );
            }
            sentence(talker, "GSV", f)
        })
        .collect()
}

/// VTG: course and speed over ground.
pub fn vtg(talker: Talker, fix: Option<&Fix>) -> String {
    match fix {
        Some(fx) => {
            let course = fx.course_deg.map(|c| format!("{c:.2}")).unwrap_or_default();
            sentence(
                talker,
                "VTG",
                [
                    course,
                    "T".into(),
                    String::new(),
                    "M".into(),
                    format!("{:.3}", fx.speed_knots),
                    "N".into(),
                    format!("{:.3}", fx.speed_knots * 1.852),
                    "K".into(),
                    "A".into(),
                ],
            )
        }
        None => sentence(talker, "VTG", ["", "", "", "", "", "", "", "", "N"]),
    }
}

/// ZDA: time and date (local zone 00:00). Empty fields when the time is unknown.
pub fn zda(talker: Talker, utc: Option<UtcTime>) -> String {
    let f: Vec<String> = match utc {
        Some(u) => vec![
            u.nmea_time(),
            format!("{:02}", u.day),
            format!("{:02}", u.month),
            format!("{:04}", u.year),
            "00".into(),
            "00".into(),
        ],
        None => vec![String::new(); 6],
    };
    sentence(talker, "ZDA", f)
}

/// One output cycle of a receiver.
#[derive(Debug, Clone)]
pub struct Epoch<'a> {
    /// [`Talker::Gp`]: GPS-only receiver, everything `GP`, only GPS satellites
    /// reported and used. [`Talker::Gn`]: combined multi-GNSS receiver (see
    /// [`Epoch::sentences`]). `GL` / `GA` behave as `GP` for their own system; `GB` /
    /// `BD` write every satellite given under that talker.
    pub talker: Talker,
    /// UTC of the epoch, Unix milliseconds; `None` when the receiver has no time.
    pub utc_ms: Option<i64>,
    /// The solution; its DOPs are written as given (the caller computes them).
    pub fix: Option<Fix>,
    /// Satellites reported while there is a fix (no fix reports none in view). Those
    /// with a C/N0 are used in the solution. The systems present here are the
    /// systems the receiver tracks.
    pub satellites: &'a [Satellite],
    /// Append a ZDA sentence (date source for devices that read it).
    pub zda: bool,
    /// Write GSA and GSV in this epoch (receivers at 5 or 10 Hz often write them
    /// once per second only; the caller decides which epochs carry them).
    pub gsa_gsv: bool,
}

impl Epoch<'_> {
    /// The sentences in the order u-blox and MediaTek receivers write them:
    /// RMC, VTG, GGA, GSA…, GSV… (if [`Epoch::gsa_gsv`]), then ZDA if enabled.
    ///
    /// With [`Talker::Gn`]: RMC, VTG, GGA and ZDA are `GN`; GGA counts the used
    /// satellites of all systems (at most 12); one [`gsa_gnss`] per system with used
    /// satellites (one for the first tracked system if none is used; without a fix
    /// one mode-1 GSA per system); GSV per system under the system's own talker
    /// (`GPGSV`, `GLGSV`, `GAGSV`), each set numbered on its own, in [`System`]
    /// order. The systems are those present in [`Epoch::satellites`] (GPS if it is
    /// empty).
    ///
    /// A system with no satellite in view (always the case without a fix) gets no
    /// GSV at all, as MediaTek and SiRF receivers do (gpsd logs `mtk-3301`,
    /// `beidou-bd`), rather than u-blox's empty `$GPGSV,1,1,00*79` (still what
    /// [`gsv`] writes for an empty list): the `nmea` crate 0.8 rejects that form (its
    /// GSV parser wants a comma after the count), and devices may use the same kind
    /// of parser.
    pub fn sentences(&self) -> Vec<String> {
        let utc = self.utc_ms.and_then(UtcTime::from_unix_ms);
        let fix = self.fix.as_ref().filter(|f| f.is_valid());
        let own_system = self.talker.system();
        let reported: Vec<Satellite> = match fix {
            Some(_) => self
                .satellites
                .iter()
                .filter(|s| own_system.is_none_or(|sys| s.system == sys))
                .copied()
                .collect(),
            None => Vec::new(),
        };
        let mut out = vec![
            rmc(self.talker, utc, fix),
            vtg(self.talker, fix),
            gga(self.talker, utc, fix, &reported),
        ];
        if self.gsa_gsv {
            if self.talker == Talker::Gn {
                self.multi_gnss_gsa_gsv(fix, &reported, &mut out);
            } else {
                out.push(gsa(self.talker, fix, &reported));
                if !reported.is_empty() {
                    out.extend(gsv(self.talker, &reported));
                }
            }
        }
        if self.zda {
            out.push(zda(self.talker, utc));
        }
        out
    }

    fn multi_gnss_gsa_gsv(&self, fix: Option<&Fix>, reported: &[Satellite], out: &mut Vec<String>) {
        let mut systems: Vec<System> = System::ALL
            .into_iter()
            .filter(|sys| self.satellites.iter().any(|s| s.system == *sys))
            .collect();
        if systems.is_empty() {
            systems.push(System::Gps);
        }
        let with_used: Vec<System> = systems
            .iter()
            .copied()
            .filter(|sys| {
                reported
                    .iter()
                    .any(|s| s.system == *sys && s.snr_db.is_some())
            })
            .collect();
        let gsa_systems = match fix {
            Some(_) if !with_used.is_empty() => with_used,
            Some(_) => systems[..1].to_vec(),
            None => systems.clone(),
        };
        for sys in gsa_systems {
            out.push(gsa_gnss(sys, fix, reported));
        }
        for sys in systems {
            let own: Vec<Satellite> = reported
                .iter()
                .filter(|s| s.system == sys)
                .copied()
                .collect();
            if !own.is_empty() {
                out.extend(gsv(sys.talker(), &own));
            }
        }
    }
}

/// Bytes an epoch's sentences take on the wire, CR LF included (10 bits per byte
/// on an 8N1 line: at 9600 baud, 960 bytes per second).
pub fn epoch_bytes(sentences: &[String]) -> usize {
    sentences.iter().map(|s| s.len() + TERMINATOR.len()).sum()
}

/// Why a line is not an acceptable sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmeaError {
    #[error("does not start with `$` or `!`")]
    NoStart,
    #[error("longer than 82 characters ({0})")]
    TooLong(usize),
    #[error("no `*HH` checksum")]
    NoChecksum,
    #[error("checksum {found:02X}, computed {computed:02X}")]
    BadChecksum { found: u8, computed: u8 },
    #[error("bad address field `{0}`")]
    BadAddress(String),
    #[error("not ASCII")]
    NotAscii,
}

/// A parsed sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// `GP`, `GN`, …, or `P` for proprietary sentences.
    pub talker: String,
    /// `RMC`, `GGA`, … (for proprietary sentences, the rest of the address).
    pub kind: String,
    /// Fields after the address.
    pub fields: Vec<String>,
}

/// Parse and validate a sentence (with or without CR LF): start character,
/// checksum, and the 82-character limit.
pub fn parse(line: &str) -> Result<Sentence, NmeaError> {
    let body = line.trim_end_matches(['\r', '\n']);
    if body.len() + TERMINATOR.len() > MAX_SENTENCE_LEN {
        return Err(NmeaError::TooLong(body.len() + TERMINATOR.len()));
    }
    parse_unbounded(body)
}

/// As [`parse`] without the length limit (for reading logs of real receivers,
/// some of which exceed it).
pub fn parse_unbounded(line: &str) -> Result<Sentence, NmeaError> {
    let body = line.trim_end_matches(['\r', '\n']);
    if !body.is_ascii() {
        return Err(NmeaError::NotAscii);
    }
    let rest = body.strip_prefix(['$', '!']).ok_or(NmeaError::NoStart)?;
    let (payload, sum) = rest.rsplit_once('*').ok_or(NmeaError::NoChecksum)?;
    // Exactly two hex digits (`from_str_radix` alone would also take `+5`).
    if sum.len() != 2 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NmeaError::NoChecksum);
    }
    let found = u8::from_str_radix(sum, 16).map_err(|_| NmeaError::NoChecksum)?;
    let computed = checksum(payload);
    if found != computed {
        return Err(NmeaError::BadChecksum { found, computed });
    }
    let mut parts = payload.split(',');
    let address = parts.next().unwrap_or_default();
    if address.len() < 2 || !address.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(NmeaError::BadAddress(address.to_string()));
    }
    let (talker, kind) = if let Some(k) = address.strip_prefix('P') {
        ("P".to_string(), k.to_string())
    } else {
        if address.len() != 5 {
            return Err(NmeaError::BadAddress(address.to_string()));
        }
        (address[..2].to_string(), address[2..].to_string())
    };
    Ok(Sentence {
        talker,
        kind,
        fields: parts.map(str::to_string).collect(),
    })
}

/// `ddmm.mmmm` / `dddmm.mmmm` and a hemisphere letter to signed degrees.
pub fn parse_angle(value: &str, hemi: &str) -> Option<f64> {
    let dot = value.find('.').unwrap_or(value.len());
    if dot < 3 {
        return None;
    }
    let deg: f64 = value[..dot - 2].parse().ok()?;
    let min: f64 = value[dot - 2..].parse().ok()?;
    if !(0.0..60.0).contains(&min) {
        return None;
    }
    let v = deg + min / 60.0;
    match hemi {
        "N" | "E" => Some(v),
        "S" | "W" => Some(-v),
        _ => None,
    }
}

impl Sentence {
    pub fn field(&self, i: usize) -> &str {
        self.fields.get(i).map(String::as_str).unwrap_or("")
    }

    /// Latitude and longitude of an RMC or GGA sentence, if it carries them.
    pub fn position(&self) -> Option<(f64, f64)> {
        let base = match self.kind.as_str() {
            "RMC" => 2,
            "GGA" => 1,
            "GLL" => 0,
            _ => return None,
        };
        let lat = parse_angle(self.field(base), self.field(base + 1))?;
        let lon = parse_angle(self.field(base + 2), self.field(base + 3))?;
        Some((lat, lon))
    }

    /// Whether this sentence reports a valid fix: RMC status `A`, GGA quality > 0,
    /// GSA mode 2/3. `None` for sentences that say nothing about it.
    pub fn has_fix(&self) -> Option<bool> {
        match self.kind.as_str() {
            "RMC" => Some(self.field(1) == "A"),
            "GGA" => Some(self.field(5).parse::<u8>().map(|q| q > 0).unwrap_or(false)),
            "GSA" => Some(matches!(self.field(1), "2" | "3")),
            _ => None,
        }
    }
}

/// The sentence as written on the wire, terminator included.
pub fn with_terminator(s: &str) -> String {
    format!("{s}{TERMINATOR}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/nmea/gpsd")
    }

    fn utc(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8, ms: u16) -> Option<UtcTime> {
        Some(UtcTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            millis: ms,
        })
    }

    #[test]
    fn no_fix_sentences_match_a_real_receiver_byte_for_byte() {
        // ublox-lea-5q.log from the gpsd corpus, epoch 00:19:02 on 2011-02-02.
        let t = utc(2011, 2, 2, 0, 19, 2, 0);
        assert_eq!(
            rmc(Talker::Gp, t, None),
            "$GPRMC,001902.00,V,,,,,,,020211,,,N*77"
        );
        assert_eq!(vtg(Talker::Gp, None), "$GPVTG,,,,,,,,,N*30");
        assert_eq!(
            gga(Talker::Gp, t, None, &[]),
            "$GPGGA,001902.00,,,,,0,00,99.99,,,,,,*6C"
        );
        assert_eq!(
            gsa(Talker::Gp, None, &[]),
            "$GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99*30"
        );
        assert_eq!(gsv(Talker::Gp, &[]), vec!["$GPGSV,1,1,00*79".to_string()]);
    }

    #[test]
    fn unix_ms_converts_to_nmea_time_and_date() {
        // 2014-05-26T08:14:11.987Z
        let u = UtcTime::from_unix_ms(1_401_092_051_987).unwrap();
        assert_eq!(u.nmea_time(), "081411.98");
        assert_eq!(u.nmea_date(), "260514");
        let z = parse(&zda(Talker::Gp, Some(u))).unwrap();
        assert_eq!(z.fields, ["081411.98", "26", "05", "2014", "00", "00"]);
    }

    #[test]
    fn fix_round_trips_to_a_micro_degree_in_every_quadrant() {
        let t = utc(2024, 1, 1, 12, 0, 0, 0);
        for (lat, lon) in [
            (52.520008, 13.404954),
            (-33.856784, 151.215297),
            (40.689247, -74.044502),
            (-0.000001, -179.999999),
            (89.999999, 0.0),
            (12.9999999, 45.99999995),
        ] {
            let fix = Fix::still(lat, lon, 34.5);
            for s in [
                rmc(Talker::Gn, t, Some(&fix)),
                gga(Talker::Gn, t, Some(&fix), &[]),
            ] {
                let p = parse(&s).unwrap();
                assert_eq!(p.talker, "GN");
                let (la, lo) = p.position().unwrap();
                assert!((la - lat).abs() < 1e-6, "{s}: {la} vs {lat}");
                assert!((lo - lon).abs() < 1e-6, "{s}: {lo} vs {lon}");
                assert_eq!(p.has_fix(), Some(true));
            }
        }
    }

    #[test]
    fn epoch_with_fix_is_in_receiver_order_and_within_limits() {
        let sats = default_constellation();
        let e = Epoch {
            talker: Talker::Gp,
            utc_ms: Some(1_700_000_000_000),
            fix: Some(Fix::still(-45.123456, -170.654321, 8848.9)),
            satellites: &sats,
            zda: true,
            gsa_gsv: true,
        };
        let s = e.sentences();
        let kinds: Vec<String> = s.iter().map(|l| parse(l).unwrap().kind).collect();
        assert_eq!(kinds, ["RMC", "VTG", "GGA", "GSA", "GSV", "GSV", "ZDA"]);
        for l in &s {
            assert!(l.len() + 2 <= MAX_SENTENCE_LEN, "{l}");
        }
        let gga = parse(&s[2]).unwrap();
        assert_eq!(gga.field(5), "1");
        assert_eq!(gga.field(6), "08");
        assert_eq!(gga.field(8), "8848.9");
        let gsa = parse(&s[3]).unwrap();
        assert_eq!(gsa.field(1), "3");
        assert_eq!(
            gsa.fields[2..10],
            ["02", "05", "12", "13", "15", "18", "24", "29"]
        );
        let gsv1 = parse(&s[4]).unwrap();
        assert_eq!(&gsv1.fields[..3], ["2", "1", "08"]);
        assert_eq!(gsv1.fields.len(), 3 + 16);
    }

    #[test]
    fn epoch_without_fix_has_v_status_and_quality_zero() {
        let e = Epoch {
            talker: Talker::Gp,
            utc_ms: Some(0),
            fix: None,
            satellites: &default_constellation(),
            zda: false,
            gsa_gsv: true,
        };
        let s: Vec<Sentence> = e.sentences().iter().map(|l| parse(l).unwrap()).collect();
        assert_eq!(s[0].field(1), "V");
        assert_eq!(s[0].position(), None);
        assert_eq!(s[2].field(5), "0");
        assert!(s.iter().all(|x| x.has_fix() != Some(true)));
    }

    #[test]
    fn an_invalid_fix_is_written_as_no_fix() {
        let e = Epoch {
            talker: Talker::Gp,
            utc_ms: Some(0),
            fix: Some(Fix::still(f64::NAN, 10.0, 0.0)),
            satellites: &[],
            zda: false,
            gsa_gsv: true,
        };
        assert_eq!(parse(&e.sentences()[0]).unwrap().field(1), "V");
    }

    #[test]
    fn parser_rejects_bad_frames() {
        let good = "$GPGSV,1,1,00*79";
        assert!(parse(good).is_ok());
        assert!(parse(&with_terminator(good)).is_ok());
        assert_eq!(
            parse("$GPGSV,1,1,01*79"),
            Err(NmeaError::BadChecksum {
                found: 0x79,
                computed: 0x78
            })
        );
        assert_eq!(parse("$GPGSV,1,1,00"), Err(NmeaError::NoChecksum));
        assert_eq!(parse("$GPGSV,1,1,00*7"), Err(NmeaError::NoChecksum));
        assert_eq!(parse("GPGSV,1,1,00*79"), Err(NmeaError::NoStart));
        assert_eq!(parse("$GPGSV,1,1,0\u{e9}*79"), Err(NmeaError::NotAscii));
        let long = frame(&format!("GPTXT,{}", "x".repeat(80)));
        assert!(matches!(parse(&long), Err(NmeaError::TooLong(_))));
        assert!(parse_unbounded(&long).is_ok());
    }

    /// Every checksummed sentence of the gpsd receiver logs verifies; flipping one
    /// payload character breaks it; lines without a checksum are refused.
    #[test]
    fn checksums_agree_with_real_receiver_logs() {
        let dir = corpus_dir();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("NMEA corpus at {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        assert!(files.len() >= 10, "corpus incomplete: {files:?}");
        let (mut ok, mut refused) = (0, 0);
        for f in &files {
            let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
            for line in text.lines() {
                let line = line.trim_end_matches('\r');
                if !line.starts_with(['$', '!']) {
                    continue;
                }
                if !line.contains('*') {
                    assert_eq!(parse_unbounded(line), Err(NmeaError::NoChecksum), "{line}");
                    refused += 1;
                    continue;
                }
                parse_unbounded(line).unwrap_or_else(|e| panic!("{}: {line}: {e}", f.display()));
                let mut bytes = line.as_bytes().to_vec();
                bytes[3] ^= 0x01;
                let corrupted = String::from_utf8(bytes).unwrap();
                assert!(
                    matches!(
                        parse_unbounded(&corrupted),
                        Err(NmeaError::BadChecksum { .. })
                    ),
                    "{corrupted}"
                );
                ok += 1;
            }
        }
        assert!(ok > 900, "only {ok} sentences");
        assert!(refused > 0);
    }

    #[test]
    fn real_rmc_decodes_to_degrees() {
        let s = parse("$GNRMC,081411.000,A,5541.1955,N,03737.2872,E,0.60,301.29,260514,,,A*74")
            .unwrap();
        let (lat, lon) = s.position().unwrap();
        assert!((lat - (55.0 + 41.1955 / 60.0)).abs() < 1e-9);
        assert!((lon - (37.0 + 37.2872 / 60.0)).abs() < 1e-9);
        assert_eq!(s.has_fix(), Some(true));
        assert_eq!(parse_angle("5541.1955", "S").map(|v| v < 0.0), Some(true));
        assert_eq!(parse_angle("5561.0", "N"), None);
    }

    // ---- Multi-GNSS output ------------------------------------------------

    fn sat(system: System, prn: u8, el: u8, az: u16, snr: Option<u8>) -> Satellite {
        Satellite {
            system,
            prn,
            elevation_deg: el,
            azimuth_deg: az,
            snr_db: snr,
        }
    }

    /// 14 GPS (13 tracked), 9 GLONASS (7 tracked), 5 Galileo (none tracked).
    fn mixed_sky() -> Vec<Satellite> {
        let mut v = Vec::new();
        for (i, prn) in [1u8, 3, 4, 6, 9, 11, 14, 17, 19, 22, 25, 28, 31, 32]
            .into_iter()
            .enumerate()
        {
            let snr = (i != 5).then_some(30 + i as u8);
            v.push(sat(System::Gps, prn, 10 + 5 * i as u8, 25 * i as u16, snr));
        }
        for (i, prn) in (65u8..74).enumerate() {
            let snr = (i % 4 != 3).then_some(25 + i as u8);
            v.push(sat(
                System::Glonass,
                prn,
                7 + 9 * i as u8,
                40 * i as u16,
                snr,
            ));
        }
        for (i, prn) in [2u8, 7, 12, 26, 36].into_iter().enumerate() {
            v.push(sat(
                System::Galileo,
                prn,
                20 + 10 * i as u8,
                70 * i as u16,
                None,
            ));
        }
        v
    }

    fn addresses(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                let p = parse(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                format!("{}{}", p.talker, p.kind)
            })
            .collect()
    }

    fn epoch(talker: Talker, fix: Option<Fix>, sats: &[Satellite], zda: bool) -> Epoch<'_> {
        Epoch {
            talker,
            utc_ms: Some(1_700_000_000_000),
            fix,
            satellites: sats,
            zda,
            gsa_gsv: true,
        }
    }

    #[test]
    fn gn_epoch_has_gsa_per_used_system_and_gsv_per_system() {
        let sats = mixed_sky();
        let fix = Fix::still(48.1, 11.6, 520.0);
        let s = epoch(Talker::Gn, Some(fix), &sats, true).sentences();
        let mut want: Vec<&str> = vec!["GNRMC", "GNVTG", "GNGGA", "GNGSA", "GNGSA"];
        want.extend(["GPGSV"; 4]);
        want.extend(["GLGSV"; 3]);
        want.extend(["GAGSV"; 2]);
        want.push("GNZDA");
        assert_eq!(addresses(&s), want);
        let p: Vec<Sentence> = s.iter().map(|l| parse(l).unwrap()).collect();
        // 13 + 7 used, capped at 12.
        assert_eq!(p[2].field(6), "12");
        // GPS: the first 12 of the 13 tracked; system id 1 after VDOP.
        assert_eq!(
            p[3].fields[2..14],
            ["01", "03", "04", "06", "09", "14", "17", "19", "22", "25", "28", "31"]
        );
        assert_eq!(p[3].fields[14..], ["1.60", "0.90", "1.32", "1"]);
        // GLONASS: its own tracked ones only, system id 2.
        assert_eq!(
            p[4].fields[2..14],
            ["65", "66", "67", "69", "70", "71", "73", "", "", "", "", ""]
        );
        assert_eq!(p[4].fields[14..], ["1.60", "0.90", "1.32", "2"]);
        // Each GSV set is numbered on its own and counts its own system.
        assert_eq!(p[5].fields[..3], ["4", "1", "14"]);
        assert_eq!(p[8].fields[..3], ["4", "4", "14"]);
        assert_eq!(p[9].fields[..3], ["3", "1", "09"]);
        assert_eq!(p[11].fields[..3], ["3", "3", "09"]);
        assert_eq!(p[12].fields[..3], ["2", "1", "05"]);
        assert_eq!(p[13].fields[..7], ["2", "2", "05", "36", "60", "280", ""]);
        for (l, x) in s.iter().zip(&p) {
            assert!(l.len() + 2 <= MAX_SENTENCE_LEN, "{l}");
            assert!(x.has_fix().unwrap_or(true), "{l}");
        }
    }

    #[test]
    fn gp_epoch_reports_only_gps() {
        let sats = mixed_sky();
        let s = epoch(Talker::Gp, Some(Fix::still(1.0, 2.0, 3.0)), &sats, false).sentences();
        let mut want = vec!["GPRMC", "GPVTG", "GPGGA", "GPGSA"];
        want.extend(["GPGSV"; 4]);
        assert_eq!(addresses(&s), want);
        let p: Vec<Sentence> = s.iter().map(|l| parse(l).unwrap()).collect();
        assert_eq!(p[2].field(6), "12");
        // No system id field in a GPS-only receiver's GSA (NMEA 2.x/3.x layout).
        assert_eq!(p[3].fields.len(), 17);
        assert_eq!(p[4].fields[..3], ["4", "1", "14"]);
        for g in p.iter().filter(|x| x.kind == "GSV") {
            for prn in g.fields[3..].iter().step_by(4) {
                assert!(prn.parse::<u8>().unwrap() <= 32, "{g:?}");
            }
        }
        // A GLONASS-only receiver likewise.
        let gl = epoch(Talker::Gl, Some(Fix::still(1.0, 2.0, 3.0)), &sats, false).sentences();
        let p: Vec<Sentence> = gl.iter().map(|l| parse(l).unwrap()).collect();
        assert_eq!(p[2].field(6), "07");
        assert_eq!(p[4].fields[..3], ["3", "1", "09"]);
        assert_eq!(addresses(&gl)[4], "GLGSV");
    }

    #[test]
    fn gsa_and_gsv_can_be_left_out() {
        let sats = mixed_sky();
        for (talker, zda, want) in [
            (Talker::Gn, true, vec!["GNRMC", "GNVTG", "GNGGA", "GNZDA"]),
            (Talker::Gp, false, vec!["GPRMC", "GPVTG", "GPGGA"]),
        ] {
            let mut e = epoch(talker, Some(Fix::still(1.0, 2.0, 3.0)), &sats, zda);
            e.gsa_gsv = false;
            assert_eq!(addresses(&e.sentences()), want);
            e.fix = None;
            assert_eq!(addresses(&e.sentences()), want);
        }
    }

    #[test]
    fn gn_without_fix_or_satellites() {
        let sats = mixed_sky();
        let s = epoch(Talker::Gn, None, &sats, false).sentences();
        // One no-fix GSA per system the receiver tracks; no GSV with none in view.
        assert_eq!(
            s[3..],
            [
                "$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1*33",
                "$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,2*30",
                "$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,3*31",
            ]
        );
        let s = epoch(Talker::Gn, None, &[], false).sentences();
        assert_eq!(addresses(&s), ["GNRMC", "GNVTG", "GNGGA", "GNGSA"]);
        let s = epoch(Talker::Gp, None, &sats, false).sentences();
        assert_eq!(addresses(&s), ["GPRMC", "GPVTG", "GPGGA", "GPGSA"]);
        // A fix with no satellites at all (a fixed test position): one GPS GSA.
        let s = epoch(Talker::Gn, Some(Fix::still(1.0, 2.0, 3.0)), &[], false).sentences();
        assert_eq!(addresses(&s), ["GNRMC", "GNVTG", "GNGGA", "GNGSA"]);
        assert_eq!(parse(&s[3]).unwrap().field(17), "1");
        assert_eq!(parse(&s[2]).unwrap().field(6), "00");
    }

    #[test]
    fn epoch_bytes_counts_the_terminators() {
        assert_eq!(epoch_bytes(&[]), 0);
        let lines = vec!["$GPGSV,1,1,00*79".to_string(), "$GPVTG,,,,,,,,,N*30".into()];
        assert_eq!(epoch_bytes(&lines), 18 + 21);
        let s = epoch(
            Talker::Gn,
            Some(Fix::still(1.0, 2.0, 3.0)),
            &mixed_sky(),
            true,
        )
        .sentences();
        let wire: String = s.iter().map(|l| with_terminator(l)).collect();
        assert_eq!(epoch_bytes(&s), wire.len());
        // A full multi-GNSS epoch fits a 9600 baud line at 1 Hz.
        assert!(epoch_bytes(&s) < 960, "{}", epoch_bytes(&s));
    }

    #[test]
    fn dops_are_bounded_as_receivers_write_them() {
        let mut fix = Fix::still(1.0, 2.0, 3.0);
        fix.pdop = 250.0;
        fix.hdop = f64::NAN;
        fix.vdop = -1.0;
        let g = parse(&gsa(Talker::Gp, Some(&fix), &[])).unwrap();
        assert_eq!(g.fields[14..], ["99.99", "99.99", "0.00"]);
        let g = parse(&gga(Talker::Gp, None, Some(&fix), &[])).unwrap();
        assert_eq!(g.field(7), "99.99");
    }

    // ---- Cross-check with the independent `nmea` crate --------------------

    /// Great-circle distance on a sphere of the mean Earth radius, metres.
    fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
        let (dp, dl) = (p2 - p1, (b.1 - a.1).to_radians());
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6_371_008.8 * h.sqrt().min(1.0).asin()
    }

    /// Milliseconds of the day from chrono's `HH:MM:SS[.fff…]` display form.
    fn ms_of_day(t: impl std::fmt::Display) -> i64 {
        let t = t.to_string();
        let (hms, frac) = t.split_once('.').unwrap_or((&t, ""));
        let p: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        let frac_ms = if frac.is_empty() {
            0
        } else {
            (format!("0.{frac}").parse::<f64>().unwrap() * 1000.0).round() as i64
        };
        ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + frac_ms
    }

    fn gnss_type(system: System) -> ::nmea::sentences::GnssType {
        match system {
            System::Gps => ::nmea::sentences::GnssType::Gps,
            System::Glonass => ::nmea::sentences::GnssType::Glonass,
            System::Galileo => ::nmea::sentences::GnssType::Galileo,
        }
    }

    fn system_id(system: System) -> ::nmea::sentences::gnss_type::GnssSystemId {
        use ::nmea::sentences::gnss_type::GnssSystemId;
        match system {
            System::Gps => GnssSystemId::Gps,
            System::Glonass => GnssSystemId::Glonass,
            System::Galileo => GnssSystemId::Galileo,
        }
    }

    /// Independent framing checks: length, `$`, two-digit upper-case checksum.
    fn check_frame(line: &str) {
        assert!(line.len() + TERMINATOR.len() <= MAX_SENTENCE_LEN, "{line}");
        let body = line.strip_prefix('$').unwrap_or_else(|| panic!("{line}"));
        let (payload, sum) = body.rsplit_once('*').unwrap_or_else(|| panic!("{line}"));
        let x = payload.bytes().fold(0u8, |a, b| a ^ b);
        assert_eq!(sum, format!("{x:02X}"), "{line}");
    }

    /// Parse every sentence of `e` (which has a fix and a time) with the `nmea`
    /// crate and compare what it reads with what was given.
    fn cross_check_fix(e: &Epoch) {
        use ::nmea::sentences::gsa::GsaMode2;
        use ::nmea::sentences::rmc::RmcStatusOfFix;
        use ::nmea::sentences::FixType;
        use ::nmea::ParseResult;

        let fix = e.fix.unwrap();
        let utc = UtcTime::from_unix_ms(e.utc_ms.unwrap()).unwrap();
        let want_ms = ((i64::from(utc.hour) * 60 + i64::from(utc.minute)) * 60
            + i64::from(utc.second))
            * 1000
            + i64::from(utc.millis / 10 * 10);
        let want_date = format!("{:04}-{:02}-{:02}", utc.year, utc.month, utc.day);
        let reported: Vec<Satellite> = e
            .satellites
            .iter()
            .filter(|s| e.talker == Talker::Gn || Some(s.system) == e.talker.system())
            .copied()
            .collect();
        let used_total = reported.iter().filter(|s| s.snr_db.is_some()).count();
        let close = |got: Option<f32>, want: f64, tol: f64, what: &str| {
            let got = got.unwrap_or_else(|| panic!("{what}: missing"));
            assert!(
                (f64::from(got) - want).abs() <= tol,
                "{what}: {got} vs {want}"
            );
        };

        let lines = e.sentences();
        let mut state = ::nmea::Nmea::default();
        let mut gsv_seen: Vec<(System, u16, usize)> = Vec::new();
        let mut gsa_seen = Vec::new();
        for line in &lines {
            check_frame(line);
            let parsed = ::nmea::parse_str(line).unwrap_or_else(|err| panic!("{line}: {err:?}"));
            match parsed {
                ParseResult::RMC(r) => {
                    assert_eq!(r.status_of_fix, RmcStatusOfFix::Autonomous, "{line}");
                    let d = haversine_m((r.lat.unwrap(), r.lon.unwrap()), (fix.lat, fix.lon));
                    assert!(d < 0.5, "{line}: {d} m from {fix:?}");
                    assert_eq!(ms_of_day(r.fix_time.unwrap()), want_ms, "{line}");
                    assert_eq!(r.fix_date.unwrap().to_string(), want_date, "{line}");
                    close(r.speed_over_ground, fix.speed_knots, 6e-4, line);
                    match fix.course_deg {
                        Some(c) => close(r.true_course, c, 6e-3, line),
                        None => assert_eq!(r.true_course, None, "{line}"),
                    }
                }
                ParseResult::GGA(g) => {
                    assert_eq!(g.fix_type, Some(FixType::Gps), "{line}");
                    let d = haversine_m(
                        (g.latitude.unwrap(), g.longitude.unwrap()),
                        (fix.lat, fix.lon),
                    );
                    assert!(d < 0.5, "{line}: {d} m from {fix:?}");
                    assert_eq!(ms_of_day(g.fix_time.unwrap()), want_ms, "{line}");
                    assert_eq!(g.fix_satellites, Some(used_total.min(12) as u32), "{line}");
                    close(g.hdop, fix.hdop, 6e-3, line);
                    close(g.altitude, fix.alt_m, 0.06, line);
                }
                ParseResult::VTG(v) => {
                    close(v.speed_over_ground, fix.speed_knots, 6e-4, line);
                    match fix.course_deg {
                        Some(c) => close(v.true_course, c, 6e-3, line),
                        None => assert_eq!(v.true_course, None, "{line}"),
                    }
                }
                ParseResult::GSA(g) => {
                    assert_eq!(g.mode2, GsaMode2::Fix3D, "{line}");
                    close(g.pdop, fix.pdop, 6e-3, line);
                    close(g.hdop, fix.hdop, 6e-3, line);
                    close(g.vdop, fix.vdop, 6e-3, line);
                    let system = System::ALL
                        .into_iter()
                        .find(|s| g.system_id == Some(system_id(*s)))
                        .unwrap_or_else(|| panic!("{line}: system {:?}", g.system_id));
                    let want: Vec<u32> = reported
                        .iter()
                        .filter(|s| s.system == system && s.snr_db.is_some())
                        .map(|s| u32::from(s.prn))
                        .take(12)
                        .collect();
                    assert_eq!(g.fix_sats_prn.as_slice(), want.as_slice(), "{line}");
                    gsa_seen.push(system);
                }
                ParseResult::GSV(g) => {
                    let system = System::ALL
                        .into_iter()
                        .find(|s| gnss_type(*s) == g.gnss_type)
                        .unwrap_or_else(|| panic!("{line}: {:?}", g.gnss_type));
                    let listed = g.sats_info.iter().flatten().count();
                    match gsv_seen.iter_mut().find(|x| x.0 == system) {
                        Some(x) => {
                            assert_eq!(x.1, g.sats_in_view, "{line}");
                            x.2 += listed;
                        }
                        None => gsv_seen.push((system, g.sats_in_view, listed)),
                    }
                    for s in g.sats_info.iter().flatten() {
                        let given = reported
                            .iter()
                            .find(|x| x.system == system && u32::from(x.prn) == s.prn())
                            .unwrap_or_else(|| panic!("{line}: {s:?} not given"));
                        assert_eq!(s.elevation(), Some(f32::from(given.elevation_deg)));
                        assert_eq!(s.azimuth(), Some(f32::from(given.azimuth_deg)));
                        assert_eq!(s.snr(), given.snr_db.map(f32::from));
                    }
                }
                ParseResult::ZDA(z) => {
                    assert_eq!(ms_of_day(z.utc_time.unwrap()), want_ms, "{line}");
                    assert_eq!(
                        (z.year, z.month, z.day),
                        (Some(utc.year as u16), Some(utc.month), Some(utc.day)),
                        "{line}"
                    );
                    continue;
                }
                other => panic!("{line}: unexpected {other:?}"),
            }
            state
                .parse(line)
                .unwrap_or_else(|err| panic!("{line}: {err:?}"));
        }

        // Every system given (for GN) or the talker's own: one GSV set with the
        // right count; a GSA for each system with used satellites.
        for system in System::ALL {
            let n = reported.iter().filter(|s| s.system == system).count();
            let set = gsv_seen.iter().find(|x| x.0 == system);
            if n > 0 {
                assert_eq!(
                    set,
                    Some(&(system, n.min(36) as u16, n.min(36))),
                    "{lines:?}"
                );
            }
            let used = reported
                .iter()
                .any(|s| s.system == system && s.snr_db.is_some());
            assert_eq!(gsa_seen.contains(&system), used, "{system:?}: {lines:?}");
        }
        assert_eq!(state.satellites().len(), reported.len(), "{lines:?}");
        assert!(state.fix_type().is_some_and(|f| f.is_valid()));
        let d = haversine_m(
            (state.latitude().unwrap(), state.longitude().unwrap()),
            (fix.lat, fix.lon),
        );
        assert!(d < 0.5);
    }

    /// A small deterministic generator for test inputs (no RNG crate).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.next()
        }
    }

    #[test]
    fn nmea_crate_reads_back_every_epoch() {
        use crate::gnss::sky::{self, Sky};
        let gps_only = Sky::new(&[System::Gps]);
        let multi = Sky::new(&System::ALL);
        let mut rng = Lcg(0x5eed);
        let mut fixes = vec![
            (52.520008, 13.404954),
            (-33.856784, 151.215297),
            (40.689247, -74.044502),
            (-0.000001, -179.999999),
            (89.999999, 0.0),
            (-89.9999999, 179.9999999),
            (0.0, 0.0),
            (12.9999999, 45.99999995),
        ];
        for _ in 0..200 {
            fixes.push((rng.range(-89.9, 89.9), rng.range(-180.0, 180.0)));
        }
        let mut epochs = 0;
        for (i, (lat, lon)) in fixes.into_iter().enumerate() {
            // 2001 … 2079 (two-digit years are read as 20yy by the crate up to 2083).
            let utc_ms = rng.range(978_307_200_000.0, 3_502_828_800_000.0) as i64;
            let alt = rng.range(-400.0, 9_000.0);
            let moving = i % 4 != 0;
            for talker in [Talker::Gp, Talker::Gn] {
                let sky_model = if talker == Talker::Gp {
                    &gps_only
                } else {
                    &multi
                };
                let attenuation = if i % 5 == 0 {
                    rng.range(0.0, 25.0)
                } else {
                    0.0
                };
                let view = sky_model.in_view(utc_ms, lat, lon, alt, 5.0, attenuation);
                let sats = sky::to_nmea(&view);
                let mut fix = Fix::still(lat, lon, alt);
                fix.geoid_sep_m = rng.range(-100.0, 80.0);
                if moving {
                    fix.speed_knots = rng.range(0.0, 150.0);
                    fix.course_deg = Some(rng.range(0.0, 359.99));
                }
                if let Some(d) = sky::dop(&view) {
                    (fix.pdop, fix.hdop, fix.vdop) = (d.pdop, d.hdop, d.vdop);
                }
                let e = Epoch {
                    talker,
                    utc_ms: Some(utc_ms),
                    fix: Some(fix),
                    satellites: &sats,
                    zda: true,
                    gsa_gsv: true,
                };
                cross_check_fix(&e);
                epochs += 1;
            }
        }
        assert_eq!(epochs, 2 * 208);
    }

    #[test]
    fn nmea_crate_reads_fixed_constellation_and_centiseconds() {
        let sats = default_constellation();
        // Two-digit years: the crate reads 84–99 as 19yy and 00–83 as 20yy.
        for ms in [
            946_684_799_999,   // 1999-12-31T23:59:59.999 → 235959.99
            946_684_800_000,   // 2000-01-01T00:00:00.000
            978_307_200_009,   // 2001-01-01T00:00:00.009 → 000000.00
            1_401_092_051_987, // 2014-05-26T08:14:11.987
            1_700_000_000_005,
            3_471_292_799_990, // 2079-12-31T23:59:59.990
        ] {
            for talker in [Talker::Gp, Talker::Gn] {
                let mut fix = Fix::still(-45.123456, -170.654321, 8848.9);
                fix.speed_knots = 3.25;
                fix.course_deg = Some(0.0);
                let mut e = epoch(talker, Some(fix), &sats, true);
                e.utc_ms = Some(ms);
                cross_check_fix(&e);
            }
        }
    }

    #[test]
    fn nmea_crate_sees_no_fix() {
        use ::nmea::sentences::gsa::GsaMode2;
        use ::nmea::sentences::rmc::RmcStatusOfFix;
        use ::nmea::sentences::FixType;
        use ::nmea::ParseResult;

        let sats = mixed_sky();
        for talker in [Talker::Gp, Talker::Gn] {
            for utc_ms in [Some(1_700_000_000_000), None] {
                let mut e = epoch(talker, None, &sats, true);
                e.utc_ms = utc_ms;
                let mut state = ::nmea::Nmea::default();
                for line in e.sentences() {
                    check_frame(&line);
                    match ::nmea::parse_str(&line).unwrap_or_else(|err| panic!("{line}: {err:?}")) {
                        ParseResult::RMC(r) => {
                            assert_eq!(r.status_of_fix, RmcStatusOfFix::Invalid);
                            assert_eq!((r.lat, r.lon), (None, None));
                            assert_eq!(r.fix_time.is_some(), utc_ms.is_some());
                        }
                        ParseResult::GGA(g) => {
                            assert_eq!(g.fix_type, Some(FixType::Invalid));
                            assert_eq!((g.latitude, g.longitude), (None, None));
                            assert_eq!(g.fix_satellites, Some(0));
                        }
                        ParseResult::VTG(v) => {
                            assert_eq!((v.true_course, v.speed_over_ground), (None, None))
                        }
                        ParseResult::GSA(g) => {
                            assert_eq!(g.mode2, GsaMode2::NoFix);
                            assert!(g.fix_sats_prn.is_empty());
                        }
                        ParseResult::GSV(_) => panic!("{line}: GSV without a fix"),
                        ParseResult::ZDA(z) => {
                            assert_eq!(z.utc_time.is_some(), utc_ms.is_some());
                            continue;
                        }
                        other => panic!("{line}: unexpected {other:?}"),
                    }
                    state
                        .parse(&line)
                        .unwrap_or_else(|err| panic!("{line}: {err:?}"));
                }
                assert_eq!(state.fix_type(), Some(FixType::Invalid), "{talker:?}");
                assert_eq!(state.latitude(), None);
                assert!(state.satellites().is_empty());
            }
        }
    }
}
