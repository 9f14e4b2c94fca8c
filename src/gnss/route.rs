//! Named places and routes as data: "the watch is at home", "the watch walks the
//! school run at 5 km/h".
//!
//! A routes directory (`fixtures/routes/`, documented in its `README.md`) holds
//! `*.yaml` files with `places:` and `routes:` mappings, and `*.gpx` files (a track
//! becomes a route named after the file, named `<wpt>`s become places). Names share
//! one namespace across the whole directory. [`RouteLibrary::load_dir`] reports every
//! mistake at once, each as `file:line:column: message`.
//!
//! A [`Route`] is a list of waypoints. Between two waypoints the position moves along
//! the WGS-84 geodesic at constant speed (altitude linear in distance); after a
//! waypoint it may dwell (stand still). The geodesic of each leg is solved once, when
//! the route is built, so [`Route::sample`] is a binary search plus one direct
//! geodesic.

use super::geo;
use crate::config::{from_serde, ConfigError, ConfigErrors, Diag, Pos, PosIndex};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Highest speed accepted in a routes file, km/h.
pub const MAX_SPEED_KMH: f64 = 1000.0;

/// Speed of the legs of a GPX track without timestamps, km/h.
pub const GPX_DEFAULT_SPEED_KMH: f64 = 5.0;

/// A named point.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// Name (`[a-z0-9-]+`), unique in its directory.
    pub name: String,
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
    /// Altitude above mean sea level, metres.
    pub alt_m: f64,
}

/// Where the simulated receiver is at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east, in [-180, 180].
    pub lon: f64,
    /// Altitude above mean sea level, metres.
    pub alt_m: f64,
    /// Speed over ground, m/s (0 when still).
    pub speed_mps: f64,
    /// Course over ground, degrees true in [0, 360); `None` when not moving.
    pub course_deg: Option<f64>,
}

/// How the time to reach a waypoint from the previous one is given.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Timing {
    /// At this speed (m/s, > 0).
    Speed(f64),
    /// In this many seconds (timed routes; may be 0).
    Duration(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Waypoint {
    lat: f64,
    lon: f64,
    alt_m: f64,
    /// How the leg *to* this waypoint is timed (ignored for the first one).
    timing: Timing,
    /// Seconds standing still after arriving.
    dwell_s: f64,
}

/// What happens during one piece of the timeline.
#[derive(Debug, Clone, Copy)]
enum Motion {
    /// Standing at a point.
    Still { lat: f64, lon: f64, alt_m: f64 },
    /// Moving along a geodesic from (lat0, lon0) with initial azimuth `azi0` over
    /// `dist` metres (0: the altitude changes on the spot).
    Leg {
        lat0: f64,
        lon0: f64,
        azi0: f64,
        dist: f64,
        alt0: f64,
        alt1: f64,
        speed_mps: f64,
    },
}

/// One piece of the timeline, `t0 <= t < t1` (never empty).
#[derive(Debug, Clone, Copy)]
struct Segment {
    t0: f64,
    t1: f64,
    motion: Motion,
}

/// A path through waypoints, with speeds and dwells, sampled by time.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name (`[a-z0-9-]+` when loaded from a directory).
    pub name: String,
    /// Free text from the file (empty if none).
    pub description: String,
    /// File it came from (empty for routes built in code).
    pub source: PathBuf,
    waypoints: Vec<Waypoint>,
    segments: Vec<Segment>,
    duration_s: f64,
    length_m: f64,
    timed: bool,
}

fn still(lat: f64, lon: f64, alt_m: f64) -> Sample {
    Sample {
        lat,
        lon,
        alt_m,
        speed_mps: 0.0,
        course_deg: None,
    }
}

impl Route {
    /// Lay the waypoints out on a timeline. Values are assumed validated; invalid
    /// ones give NaN samples, never a panic.
    fn build(
        name: &str,
        description: &str,
        source: PathBuf,
        waypoints: Vec<Waypoint>,
        timed: bool,
    ) -> Route {
        let mut segments = Vec::new();
        let mut t = 0.0f64;
        let mut length_m = 0.0f64;
        let mut push = |t: &mut f64, dur: f64, motion: Motion| {
            if dur > 0.0 {
                segments.push(Segment {
                    t0: *t,
                    t1: *t + dur,
                    motion,
                });
                *t += dur;
            }
        };
        if let Some(w) = waypoints.first() {
            push(
                &mut t,
                w.dwell_s,
                Motion::Still {
                    lat: w.lat,
                    lon: w.lon,
                    alt_m: w.alt_m,
                },
            );
        }
        for pair in waypoints.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let inv = geo::inverse(a.lat, a.lon, b.lat, b.lon);
            let dist = if inv.distance_m > 0.0 {
                inv.distance_m
            } else {
                0.0
            };
            let (dur, speed_mps) = match b.timing {
                Timing::Speed(v) => (dist / v, v),
                Timing::Duration(d) => (d, if d > 0.0 { dist / d } else { 0.0 }),
            };
            push(
                &mut t,
                dur,
                Motion::Leg {
                    lat0: a.lat,
                    lon0: a.lon,
                    azi0: inv.azimuth1_deg,
                    dist,
                    alt0: a.alt_m,
                    alt1: b.alt_m,
                    speed_mps: if dist > 0.0 { speed_mps } else { 0.0 },
                },
            );
            length_m += dist;
            push(
                &mut t,
                b.dwell_s,
                Motion::Still {
                    lat: b.lat,
                    lon: b.lon,
                    alt_m: b.alt_m,
                },
            );
        }
        Route {
            name: name.to_string(),
            description: description.to_string(),
            source,
            waypoints,
            segments,
            duration_s: t,
            length_m,
            timed,
        }
    }

    /// A route from explicit waypoints (used by steps and tests): each is
    /// `(lat, lon, alt_m, speed_mps to reach it, dwell_s after it)`. The first
    /// waypoint's speed is ignored. Errors: no waypoints, a single waypoint without
    /// a dwell > 0, a coordinate out of range or not finite, a speed that is not
    /// finite and > 0, a negative dwell.
    pub fn from_waypoints(
        name: &str,
        points: &[(f64, f64, f64, f64, f64)],
    ) -> Result<Route, String> {
        if points.is_empty() {
            return Err(format!(
                "route `{name}` has no waypoints: expected at least 2"
            ));
        }
        let first_dwell = points[0].4;
        if points.len() == 1 && !(first_dwell.is_finite() && first_dwell > 0.0) {
            return Err(format!(
                "route `{name}` has a single waypoint and no dwell: expected at least 2 \
                 waypoints, or a dwell_s > 0 to stay at one"
            ));
        }
        let mut wps = Vec::with_capacity(points.len());
        for (i, &(lat, lon, alt_m, speed_mps, dwell_s)) in points.iter().enumerate() {
            let n = i + 1;
            if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
                return Err(format!("waypoint {n}: latitude {lat}: expected -90..=90"));
            }
            if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
                return Err(format!(
                    "waypoint {n}: longitude {lon}: expected -180..=180"
                ));
            }
            if !alt_m.is_finite() {
                return Err(format!(
                    "waypoint {n}: altitude {alt_m}: expected a finite number of metres"
                ));
            }
            if i > 0 && !(speed_mps.is_finite() && speed_mps > 0.0) {
                return Err(format!(
                    "waypoint {n}: speed {speed_mps} m/s: expected a finite speed > 0"
                ));
            }
            if !(dwell_s.is_finite() && dwell_s >= 0.0) {
                return Err(format!(
                    "waypoint {n}: dwell {dwell_s} s: expected a finite number >= 0"
                ));
            }
            wps.push(Waypoint {
                lat,
                lon,
                alt_m,
                timing: Timing::Speed(if i > 0 { speed_mps } else { 1.0 }),
                dwell_s,
            });
        }
        Ok(Route::build(name, "", PathBuf::new(), wps, false))
    }

    /// A route that stays at one point for `dwell_s` seconds. Out-of-range input is
    /// made usable rather than refused: the latitude is clamped to [-90, 90], the
    /// longitude wrapped to [-180, 180), a non-finite value becomes 0, and a negative
    /// dwell 0.
    pub fn stay(name: &str, lat: f64, lon: f64, alt_m: f64, dwell_s: f64) -> Route {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let lat = finite(lat).clamp(-90.0, 90.0);
        let lon = {
            let l = finite(lon);
            if (-180.0..=180.0).contains(&l) {
                l
            } else {
                geo::normalize_deg(l + 180.0) - 180.0
            }
        };
        let wp = Waypoint {
            lat,
            lon,
            alt_m: finite(alt_m),
            timing: Timing::Speed(1.0),
            dwell_s: finite(dwell_s).max(0.0),
        };
        Route::build(name, "", PathBuf::new(), vec![wp], false)
    }

    /// Seconds from the start to the end (dwells included).
    pub fn duration_s(&self) -> f64 {
        self.duration_s
    }

    /// Length of the path along the geodesics, metres.
    pub fn length_m(&self) -> f64 {
        self.length_m
    }

    /// Whether the route follows timestamps (a GPX track with a time on every point)
    /// rather than speeds.
    pub fn is_timed(&self) -> bool {
        self.timed
    }

    /// Position at `t_s` seconds after the start. Before 0 (or NaN): the start;
    /// from the end on: the end; both still (speed 0, course `None`). Between
    /// waypoints the point moves along the WGS-84 geodesic at constant speed, with
    /// course = the geodesic's azimuth at that point, altitude linear in distance.
    /// During a dwell: still at the waypoint.
    pub fn sample(&self, t_s: f64) -> Sample {
        if t_s.is_nan() || t_s < 0.0 {
            return self.start();
        }
        // First segment that ends after t: segments are contiguous from 0.
        let i = self.segments.partition_point(|s| s.t1 <= t_s);
        let Some(seg) = self.segments.get(i) else {
            return self.end();
        };
        match seg.motion {
            Motion::Still { lat, lon, alt_m } => still(lat, lon, alt_m),
            Motion::Leg {
                lat0,
                lon0,
                azi0,
                dist,
                alt0,
                alt1,
                speed_mps,
            } => {
                let f = ((t_s - seg.t0) / (seg.t1 - seg.t0)).clamp(0.0, 1.0);
                let alt_m = alt0 + (alt1 - alt0) * f;
                if dist > 0.0 {
                    let (lat, lon, azi) = geo::direct(lat0, lon0, azi0, dist * f);
                    Sample {
                        lat,
                        lon,
                        alt_m,
                        speed_mps,
                        course_deg: Some(geo::normalize_deg(azi)),
                    }
                } else {
                    still(lat0, lon0, alt_m)
                }
            }
        }
    }

    /// The same path with every moving leg at `speed_mps` (dwells kept); timed
    /// routes become speed-based. A speed that is not finite and > 0 leaves the
    /// route as it is.
    pub fn with_speed(&self, speed_mps: f64) -> Route {
        if !(speed_mps.is_finite() && speed_mps > 0.0) {
            return self.clone();
        }
        let wps = self
            .waypoints
            .iter()
            .map(|w| Waypoint {
                timing: Timing::Speed(speed_mps),
                ..*w
            })
            .collect();
        Route::build(
            &self.name,
            &self.description,
            self.source.clone(),
            wps,
            false,
        )
    }

    /// The first waypoint, still.
    pub fn start(&self) -> Sample {
        match self.waypoints.first() {
            Some(w) => still(w.lat, w.lon, w.alt_m),
            None => still(f64::NAN, f64::NAN, f64::NAN),
        }
    }

    /// The last waypoint, still.
    pub fn end(&self) -> Sample {
        match self.waypoints.last() {
            Some(w) => still(w.lat, w.lon, w.alt_m),
            None => still(f64::NAN, f64::NAN, f64::NAN),
        }
    }

    /// The waypoints as (lat, lon, alt_m) for reports and plots.
    pub fn points(&self) -> Vec<(f64, f64, f64)> {
        self.waypoints
            .iter()
            .map(|w| (w.lat, w.lon, w.alt_m))
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// Routes directory
// ---------------------------------------------------------------------------------

/// Every place and route of a routes directory.
#[derive(Debug, Clone, Default)]
pub struct RouteLibrary {
    places: BTreeMap<String, Place>,
    routes: BTreeMap<String, Route>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a routes file mapping with `places:` and/or `routes:`"
)]
struct RawFile {
    #[serde(default)]
    places: Option<BTreeMap<String, RawPlace>>,
    #[serde(default)]
    routes: Option<BTreeMap<String, RawRoute>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a place: `{ lat: …, lon: …, alt: … }`"
)]
struct RawPlace {
    lat: f64,
    lon: f64,
    #[serde(default)]
    alt: f64,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a route: `description`, `speed_kmh` and `waypoints`"
)]
struct RawRoute {
    #[serde(default)]
    description: String,
    #[serde(default)]
    speed_kmh: Option<f64>,
    waypoints: Vec<RawWaypoint>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a waypoint: `{ place: NAME }` or `{ lat: …, lon: …, alt: … }`, \
                 with optional `speed_kmh` and `dwell_s`"
)]
struct RawWaypoint {
    #[serde(default)]
    place: Option<String>,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lon: Option<f64>,
    #[serde(default)]
    alt: Option<f64>,
    #[serde(default)]
    speed_kmh: Option<f64>,
    #[serde(default)]
    dwell_s: Option<f64>,
}

/// A YAML file between the two loading passes.
struct YamlFile {
    path: PathBuf,
    index: PosIndex,
    routes: Vec<(String, RawRoute)>,
    errors: Vec<ConfigError>,
}

/// Who owns each name of the directory, for duplicate errors citing both places.
#[derive(Default)]
struct Names {
    seen: BTreeMap<String, (&'static str, String)>,
}

impl Names {
    /// Claim `name` for a `kind` defined at `location`; on a duplicate, the message
    /// of the error to report at the second definition.
    fn claim(&mut self, name: &str, kind: &'static str, location: String) -> Result<(), String> {
        if let Some((k, first)) = self.seen.get(name) {
            return Err(format!(
                "duplicate name `{name}`: already defined as a {k} at {first}: expected \
                 every place and route name once in the directory"
            ));
        }
        self.seen.insert(name.to_string(), (kind, location));
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A GPX file stem or waypoint name as a place/route name: lowercased, every
/// character other than `a-z`, `0-9`, `-` replaced by `-`.
fn gpx_name(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn location(file: &Path, pos: Pos) -> String {
    ConfigError::at(file, pos, "").location()
}

fn kmh_ok(v: f64) -> bool {
    v.is_finite() && v > 0.0 && v <= MAX_SPEED_KMH
}

impl RouteLibrary {
    /// A library without places or routes.
    pub fn empty() -> RouteLibrary {
        RouteLibrary::default()
    }

    /// Load every `*.yaml` and `*.gpx` in `dir` (not recursive), in file-name order.
    /// Returns all errors at once, grouped by file and sorted by position.
    pub fn load_dir(dir: &Path) -> Result<RouteLibrary, ConfigErrors> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ConfigError::whole(dir, format!("cannot read routes directory: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|x| {
                        x.eq_ignore_ascii_case("yaml") || x.eq_ignore_ascii_case("gpx")
                    })
            })
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

        let mut lib = RouteLibrary::empty();
        let mut names = Names::default();
        // Errors per file, in file order.
        let mut per_file: Vec<Vec<ConfigError>> = Vec::new();
        let mut yaml: Vec<(usize, YamlFile)> = Vec::new();

        // Pass 1: every name, places from every file, routes from GPX files.
        for path in &files {
            let slot = per_file.len();
            per_file.push(Vec::new());
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    per_file[slot].push(ConfigError::whole(path, format!("cannot read file: {e}")));
                    continue;
                }
            };
            let is_gpx = path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gpx"));
            if is_gpx {
                lib.load_gpx(path, &text, &mut names, &mut per_file[slot]);
            } else {
                let file = lib.load_yaml_places(path, &text, &mut names);
                yaml.push((slot, file));
            }
        }

        // Pass 2: YAML routes, now that every place is known.
        for (slot, mut file) in yaml {
            let routes = std::mem::take(&mut file.routes);
            let mut d = Diag::new(&file.path, &file.index);
            for (name, raw) in routes {
                if let Some(route) = lib.validate_route(&name, raw, &mut d) {
                    lib.routes.insert(name, route);
                }
            }
            let mut errs = d.errors;
            file.errors.append(&mut errs);
            per_file[slot].append(&mut file.errors);
        }

        let mut errors = Vec::new();
        for mut errs in per_file {
            errs.sort_by_key(|e| (e.line, e.column));
            errors.append(&mut errs);
        }
        if errors.is_empty() {
            Ok(lib)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Pass 1 of a YAML file: syntax, types, places, route names. Routes are kept
    /// raw until every place of the directory is known.
    fn load_yaml_places(&mut self, path: &Path, text: &str, names: &mut Names) -> YamlFile {
        let index = PosIndex::build(text);
        let mut errors = Vec::new();
        let mut routes = Vec::new();
        {
            let mut d = Diag::new(path, &index);
            for (p, second, first) in index.duplicates() {
                let key = p.last().cloned().unwrap_or_default();
                d.errors.push(ConfigError::at(
                    path,
                    *second,
                    format!(
                        "duplicate key `{key}` (first given at {}): expected each key once",
                        location(path, *first)
                    ),
                ));
            }
            let empty = matches!(
                serde_yaml::from_str::<serde_yaml::Value>(text),
                Ok(serde_yaml::Value::Null)
            );
            if !empty {
                match serde_yaml::from_str::<RawFile>(text) {
                    Ok(raw) => {
                        self.validate_places(raw.places.unwrap_or_default(), &mut d, names);
                        // Keep routes in document order.
                        let mut raw_routes = raw.routes.unwrap_or_default();
                        for name in index.keys(&["routes"]) {
                            if let Some(r) = raw_routes.remove(&name) {
                                routes.push((name, r));
                            }
                        }
                        routes.extend(raw_routes);
                        // Claim the names now, in file order with everything else.
                        routes.retain(|(name, _)| {
                            let key = ["routes", name.as_str()];
                            match names.claim(name, "route", location(path, index.key(&key))) {
                                Ok(()) => true,
                                Err(msg) => {
                                    d.err_key(&key, msg);
                                    false
                                }
                            }
                        });
                    }
                    Err(e) => {
                        let err = from_serde(path, text, &e);
                        // serde's own duplicate complaint repeats one reported above.
                        let repeated = index.duplicates().iter().any(|(p, _, _)| {
                            p.last().is_some_and(|k| {
                                err.message.contains("duplicate")
                                    && err.message.contains(k.as_str())
                            })
                        });
                        if !repeated {
                            d.errors.push(err);
                        }
                    }
                }
            }
            errors.append(&mut d.errors);
        }
        YamlFile {
            path: path.to_path_buf(),
            index,
            routes,
            errors,
        }
    }

    fn validate_places(
        &mut self,
        raw: BTreeMap<String, RawPlace>,
        d: &mut Diag,
        names: &mut Names,
    ) {
        // Document order, so that a duplicate is reported at the later one.
        let mut raw = raw;
        let mut ordered: Vec<(String, RawPlace)> = Vec::new();
        for name in d.index.keys(&["places"]) {
            if let Some(p) = raw.remove(&name) {
                ordered.push((name, p));
            }
        }
        ordered.extend(raw);
        for (name, p) in ordered {
            let key = ["places", name.as_str()];
            let mut ok = true;
            if !valid_name(&name) {
                d.err_key(
                    &key,
                    format!(
                        "invalid place name `{name}`: expected lowercase letters, digits and `-`"
                    ),
                );
                ok = false;
            }
            ok &= check_lat(d, &["places", name.as_str(), "lat"], p.lat);
            ok &= check_lon(d, &["places", name.as_str(), "lon"], p.lon);
            ok &= check_alt(d, &["places", name.as_str(), "alt"], p.alt);
            if !ok {
                continue;
            }
            if let Err(msg) = names.claim(&name, "place", location(d.file, d.index.key(&key))) {
                d.err_key(&key, msg);
                continue;
            }
            self.places.insert(
                name.clone(),
                Place {
                    name,
                    lat: p.lat,
                    lon: p.lon,
                    alt_m: p.alt,
                },
            );
        }
    }

    fn validate_route(&self, name: &str, raw: RawRoute, d: &mut Diag) -> Option<Route> {
        let mut ok = true;
        if !valid_name(name) {
            d.err_key(
                &["routes", name],
                format!("invalid route name `{name}`: expected lowercase letters, digits and `-`"),
            );
            ok = false;
        }
        if let Some(v) = raw.speed_kmh {
            if !kmh_ok(v) {
                d.err(
                    &["routes", name, "speed_kmh"],
                    format!(
                        "speed_kmh is {v}: expected a number > 0 and <= {MAX_SPEED_KMH} (km/h)"
                    ),
                );
                ok = false;
            }
        }
        let n = raw.waypoints.len();
        if n == 0 {
            d.err(
                &["routes", name, "waypoints"],
                format!("route `{name}` has no waypoints: expected at least 2"),
            );
            return None;
        }
        if n == 1 && !raw.waypoints[0].dwell_s.is_some_and(|v| v > 0.0) {
            d.err(
                &["routes", name, "waypoints"],
                format!(
                    "route `{name}` has a single waypoint and no dwell: expected at least 2 \
                     waypoints, or `dwell_s` > 0 on the one waypoint to stay there"
                ),
            );
            ok = false;
        }
        let mut wps = Vec::with_capacity(n);
        let mut prev_alt = 0.0;
        let mut speedless = Vec::new();
        for (i, w) in raw.waypoints.into_iter().enumerate() {
            let idx = i.to_string();
            let here = ["routes", name, "waypoints", idx.as_str()];
            let field = |f: &'static str| ["routes", name, "waypoints", idx.as_str(), f];
            let num = i + 1;
            let coords = w.lat.is_some() || w.lon.is_some() || w.alt.is_some();
            let pos = match (&w.place, coords) {
                (Some(_), true) => {
                    d.err(
                        &here,
                        format!(
                            "waypoint {num} gives both `place` and `lat`/`lon`/`alt`: expected \
                             either `place: NAME` or coordinates"
                        ),
                    );
                    None
                }
                (None, false) => {
                    d.err(
                        &here,
                        format!("waypoint {num} has no position: expected `place: NAME` or `lat` and `lon`"),
                    );
                    None
                }
                (Some(pname), false) => match self.places.get(pname) {
                    Some(p) => Some((p.lat, p.lon, p.alt_m)),
                    None => {
                        let known: Vec<&str> = self.places.keys().map(String::as_str).collect();
                        d.err(
                            &field("place"),
                            format!(
                                "unknown place `{pname}`: expected one of the places of the \
                                 directory: {}",
                                if known.is_empty() {
                                    "(none defined)".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                        None
                    }
                },
                (None, true) => {
                    let mut good = true;
                    match w.lat {
                        Some(v) => good &= check_lat(d, &field("lat"), v),
                        None => {
                            d.err(
                                &here,
                                format!("waypoint {num} has `lon` but no `lat`: expected both"),
                            );
                            good = false;
                        }
                    }
                    match w.lon {
                        Some(v) => good &= check_lon(d, &field("lon"), v),
                        None => {
                            d.err(
                                &here,
                                format!("waypoint {num} has `lat` but no `lon`: expected both"),
                            );
                            good = false;
                        }
                    }
                    if let Some(v) = w.alt {
                        good &= check_alt(d, &field("alt"), v);
                    }
                    match (w.lat, w.lon, good) {
                        (Some(la), Some(lo), true) => Some((la, lo, w.alt.unwrap_or(prev_alt))),
                        _ => None,
                    }
                }
            };
            let mut speed = None;
            if let Some(v) = w.speed_kmh {
                if i == 0 {
                    d.err(
                        &field("speed_kmh"),
                        "speed_kmh on the first waypoint: expected it on later waypoints only \
                         (it is the speed of the leg that reaches the waypoint)",
                    );
                    ok = false;
                } else if !kmh_ok(v) {
                    d.err(
                        &field("speed_kmh"),
                        format!(
                            "speed_kmh is {v}: expected a number > 0 and <= {MAX_SPEED_KMH} (km/h)"
                        ),
                    );
                    ok = false;
                } else {
                    speed = Some(v);
                }
            } else if i > 0 {
                match raw.speed_kmh {
                    Some(v) => speed = Some(v),
                    None => speedless.push(num),
                }
            }
            let dwell_s = w.dwell_s.unwrap_or(0.0);
            if !(dwell_s.is_finite() && dwell_s >= 0.0) {
                d.err(
                    &field("dwell_s"),
                    format!("dwell_s is {dwell_s}: expected a number of seconds >= 0"),
                );
                ok = false;
            }
            match pos {
                Some((lat, lon, alt_m)) => {
                    prev_alt = alt_m;
                    wps.push(Waypoint {
                        lat,
                        lon,
                        alt_m,
                        timing: Timing::Speed(speed.unwrap_or(1.0) / 3.6),
                        dwell_s,
                    });
                }
                None => ok = false,
            }
        }
        if !speedless.is_empty() {
            let list: Vec<String> = speedless.iter().map(|n| n.to_string()).collect();
            d.err_key(
                &["routes", name],
                format!(
                    "route `{name}` has no speed_kmh and the leg(s) to waypoint(s) {} give none: \
                     expected `speed_kmh:` on the route (the default for every leg) or on each \
                     of those waypoints",
                    list.join(", ")
                ),
            );
            ok = false;
        }
        ok.then(|| Route::build(name, &raw.description, d.file.to_path_buf(), wps, false))
    }

    /// A GPX file: the first track becomes a route named after the file stem, named
    /// waypoints become places.
    fn load_gpx(
        &mut self,
        path: &Path,
        text: &str,
        names: &mut Names,
        errors: &mut Vec<ConfigError>,
    ) {
        // The GPX/XML parsers are third-party code fed with user files: a panic in
        // them becomes an error here rather than the end of the run.
        let parsed = std::panic::catch_unwind(|| gpx::read(text.as_bytes()));
        let gpx = match parsed {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => {
                errors.push(gpx_error(path, text, &e));
                return;
            }
            Err(_) => {
                errors.push(ConfigError::whole(
                    path,
                    "cannot read GPX: the GPX parser failed on this file",
                ));
                return;
            }
        };
        // Places from named <wpt>s.
        let wpt_pos = tag_positions(text, "wpt");
        let wpt_pos = (wpt_pos.len() == gpx.waypoints.len()).then_some(wpt_pos);
        for (i, w) in gpx.waypoints.iter().enumerate() {
            let pos = wpt_pos
                .as_ref()
                .and_then(|v| v.get(i).copied())
                .unwrap_or_default();
            let Some(raw_name) = &w.name else { continue };
            let name = gpx_name(raw_name.trim());
            if name.is_empty() {
                errors.push(ConfigError::at(
                    path,
                    pos,
                    format!(
                        "waypoint {} has an empty <name>: expected a name (or none)",
                        i + 1
                    ),
                ));
                continue;
            }
            let (lat, lon) = (w.point().y(), w.point().x());
            let alt_m = w.elevation.unwrap_or(0.0);
            if !alt_m.is_finite() {
                errors.push(ConfigError::at(
                    path,
                    pos,
                    format!(
                        "waypoint `{name}`: <ele> is {alt_m}: expected a finite number of metres"
                    ),
                ));
                continue;
            }
            if let Err(msg) = names.claim(&name, "place", location(path, pos)) {
                errors.push(ConfigError::at(path, pos, msg));
                continue;
            }
            self.places.insert(
                name.clone(),
                Place {
                    name,
                    lat,
                    lon,
                    alt_m,
                },
            );
        }

        // The route from the first track.
        let Some(track) = gpx.tracks.first() else {
            return;
        };
        let trk_pos = tag_positions(text, "trk")
            .first()
            .copied()
            .unwrap_or_default();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = gpx_name(&stem);
        let points: Vec<&gpx::Waypoint> = track
            .segments
            .iter()
            .flat_map(|s| s.points.iter())
            .collect();
        let pt_pos = tag_positions(text, "trkpt");
        let pt_at = |i: usize| -> Pos {
            if pt_pos.len() >= points.len() {
                pt_pos.get(i).copied().unwrap_or(trk_pos)
            } else {
                trk_pos
            }
        };
        let mut ok = true;
        if name.is_empty() {
            errors.push(ConfigError::at(
                path,
                trk_pos,
                "the file name gives an empty route name: expected a file name like `my-walk.gpx`",
            ));
            ok = false;
        }
        if points.len() < 2 {
            errors.push(ConfigError::at(
                path,
                trk_pos,
                format!(
                    "track has {} point(s): expected at least 2 <trkpt>",
                    points.len()
                ),
            ));
            ok = false;
        }
        let timed = !points.is_empty() && points.iter().all(|p| p.time.is_some());
        let mut offsets = Vec::with_capacity(points.len());
        if timed {
            let times: Vec<time::OffsetDateTime> = points
                .iter()
                .filter_map(|p| p.time.map(time::OffsetDateTime::from))
                .collect();
            let t0 = times
                .first()
                .copied()
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            for (i, t) in times.iter().enumerate() {
                if i > 0 && *t < times[i - 1] {
                    errors.push(ConfigError::at(
                        path,
                        pt_at(i),
                        format!(
                            "track point {i} (counting from 0) goes back in time: {} is before \
                             the previous point's {}: expected non-decreasing <time>s",
                            fmt_time(*t),
                            fmt_time(times[i - 1])
                        ),
                    ));
                    ok = false;
                }
                offsets.push((*t - t0).as_seconds_f64());
            }
        }
        let mut wps = Vec::with_capacity(points.len());
        let mut prev_alt = 0.0;
        for (i, p) in points.iter().enumerate() {
            let alt_m = p.elevation.unwrap_or(prev_alt);
            if !alt_m.is_finite() {
                errors.push(ConfigError::at(
                    path,
                    pt_at(i),
                    format!("track point {i} (counting from 0): <ele> is {alt_m}: expected a finite number of metres"),
                ));
                ok = false;
                continue;
            }
            prev_alt = alt_m;
            let timing = if timed && i > 0 {
                Timing::Duration((offsets[i] - offsets[i - 1]).max(0.0))
            } else {
                Timing::Speed(GPX_DEFAULT_SPEED_KMH / 3.6)
            };
            wps.push(Waypoint {
                lat: p.point().y(),
                lon: p.point().x(),
                alt_m,
                timing,
                dwell_s: 0.0,
            });
        }
        if !ok {
            return;
        }
        if let Err(msg) = names.claim(&name, "route", location(path, trk_pos)) {
            errors.push(ConfigError::at(path, trk_pos, msg));
            return;
        }
        let description = track
            .description
            .clone()
            .or_else(|| track.name.clone())
            .unwrap_or_default();
        let route = Route::build(&name, &description, path.to_path_buf(), wps, timed);
        self.routes.insert(name, route);
    }

    /// The place called `name`.
    pub fn place(&self, name: &str) -> Option<&Place> {
        self.places.get(name)
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    /// Names of all places, sorted.
    pub fn place_names(&self) -> Vec<&str> {
        self.places.keys().map(String::as_str).collect()
    }

    /// Names of all routes, sorted.
    pub fn route_names(&self) -> Vec<&str> {
        self.routes.keys().map(String::as_str).collect()
    }
}

fn check_lat(d: &mut Diag, path: &[&str], v: f64) -> bool {
    let ok = v.is_finite() && (-90.0..=90.0).contains(&v);
    if !ok {
        d.err(path, format!("latitude {v}: expected degrees in -90..=90"));
    }
    ok
}

fn check_lon(d: &mut Diag, path: &[&str], v: f64) -> bool {
    let ok = v.is_finite() && (-180.0..=180.0).contains(&v);
    if !ok {
        d.err(
            path,
            format!("longitude {v}: expected degrees in -180..=180"),
        );
    }
    ok
}

fn check_alt(d: &mut Diag, path: &[&str], v: f64) -> bool {
    let ok = v.is_finite();
    if !ok {
        d.err(
            path,
            format!("altitude {v}: expected a finite number of metres above sea level"),
        );
    }
    ok
}

fn fmt_time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A GPX parse error, positioned when the XML parser says where, or, for a bad
/// point, at the first `<wpt>`/`<trkpt>`/`<rtept>` whose `lat`/`lon` is missing or
/// invalid (the gpx crate does not say which).
fn gpx_error(path: &Path, text: &str, e: &gpx::errors::GpxError) -> ConfigError {
    use gpx::errors::GpxError;
    let mut msg = format!("cannot read GPX: {e}");
    let mut pos = Pos::default();
    if let Some(src) = std::error::Error::source(e) {
        let s = src.to_string();
        // xml-rs writes "LINE:COLUMN message".
        let mut rest = s.as_str();
        if let Some((head, tail)) = s.split_once(' ') {
            if let Some((l, c)) = head.split_once(':') {
                if let (Ok(l), Ok(c)) = (l.parse::<usize>(), c.parse::<usize>()) {
                    pos = Pos { line: l, column: c };
                    rest = tail;
                }
            }
        }
        msg = format!("{msg}: {rest}");
    }
    if pos.line == 0
        && matches!(
            e,
            GpxError::InvalidElementLacksAttribute(..)
                | GpxError::LonLatOutOfBoundsError(..)
                | GpxError::ParseFloatError(..)
        )
    {
        if let Some(p) = first_bad_point(text) {
            pos = p;
        }
    }
    ConfigError::at(path, pos, msg)
}

/// The first point element whose `lat` or `lon` the gpx crate would refuse.
fn first_bad_point(text: &str) -> Option<Pos> {
    let mut tags: Vec<(Pos, &str)> = ["wpt", "trkpt", "rtept"]
        .iter()
        .flat_map(|t| start_tags(text, t))
        .collect();
    tags.sort_by_key(|(p, _)| (p.line, p.column));
    let number = |v: Option<&str>| v.and_then(|v| v.trim().parse::<f64>().ok());
    tags.into_iter()
        .find(|(_, tag)| {
            let lat_ok = number(attribute(tag, "lat")).is_some_and(|v| (-90.0..=90.0).contains(&v));
            let lon_ok =
                number(attribute(tag, "lon")).is_some_and(|v| (-180.0..180.0).contains(&v));
            !(lat_ok && lon_ok)
        })
        .map(|(p, _)| p)
}

/// The value of attribute `name` in a start tag's text (`<trkpt lat="1" …>`).
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0usize;
    while let Some(i) = tag[from..].find(name).map(|i| i + from) {
        from = i + name.len();
        let preceded = tag[..i]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        let Some(v) = tag[from..].trim_start().strip_prefix('=') else {
            continue;
        };
        if !preceded {
            continue;
        }
        let v = v.trim_start();
        let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let body = &v[q.len_utf8()..];
        return body.find(q).map(|e| &body[..e]);
    }
    None
}

/// Positions of the start tags `<tag` (followed by a blank, `>` or `/`) in document
/// order, outside comments.
fn tag_positions(text: &str, tag: &str) -> Vec<Pos> {
    start_tags(text, tag).into_iter().map(|(p, _)| p).collect()
}

/// Start tags `<tag …>` outside comments, in document order, with their text (up to
/// and including `>`, or to the end of the text).
fn start_tags<'a>(text: &'a str, tag: &str) -> Vec<(Pos, &'a str)> {
    let open = format!("<{tag}");
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut line_start = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        if b == b'<' {
            let rest = &text[i..];
            if rest.starts_with("<!--") {
                let end = rest.find("-->").map(|e| i + e + 3).unwrap_or(bytes.len());
                // Count the lines inside the comment.
                for (j, c) in text[i..end].bytes().enumerate() {
                    if c == b'\n' {
                        line += 1;
                        line_start = i + j + 1;
                    }
                }
                i = end;
                continue;
            }
            if rest.starts_with(&open)
                && rest[open.len()..]
                    .bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_whitespace() || c == b'>' || c == b'/')
            {
                let column = text[line_start..i].chars().count() + 1;
                let end = rest.find('>').map(|e| e + 1).unwrap_or(rest.len());
                out.push((Pos { line, column }, &rest[..end]));
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: (f64, f64) = (52.520008, 13.404954);

    fn dist(a: &Sample, lat: f64, lon: f64) -> f64 {
        geo::distance_m(a.lat, a.lon, lat, lon)
    }

    fn three_legs() -> Route {
        Route::from_waypoints(
            "t",
            &[
                (HOME.0, HOME.1, 40.0, 0.0, 0.0),
                (52.5215, 13.4090, 44.0, 1.5, 30.0),
                (52.5265, 13.4190, 50.0, 2.0, 0.0),
            ],
        )
        .unwrap()
    }

    #[test]
    fn samples_at_boundaries_and_mid_leg() {
        let r = three_legs();
        let leg1 = geo::inverse(HOME.0, HOME.1, 52.5215, 13.4090);
        let leg2 = geo::inverse(52.5215, 13.4090, 52.5265, 13.4190);
        let t1 = leg1.distance_m / 1.5;
        let t2 = t1 + 30.0;
        let t3 = t2 + leg2.distance_m / 2.0;
        assert!((r.duration_s() - t3).abs() < 1e-9);
        assert!((r.length_m() - leg1.distance_m - leg2.distance_m).abs() < 1e-9);

        let s0 = r.sample(0.0);
        assert!(dist(&s0, HOME.0, HOME.1) < 1e-6);
        assert_eq!(s0.speed_mps, 1.5);
        assert!((s0.course_deg.unwrap() - geo::normalize_deg(leg1.azimuth1_deg)).abs() < 1e-9);
        assert_eq!(s0.alt_m, 40.0);

        // Mid-leg: half the geodesic from both ends.
        for (t, a, b, l) in [
            (t1 / 2.0, HOME, (52.5215, 13.4090), leg1.distance_m),
            (
                (t2 + t3) / 2.0,
                (52.5215, 13.4090),
                (52.5265, 13.4190),
                leg2.distance_m,
            ),
        ] {
            let m = r.sample(t);
            assert!((dist(&m, a.0, a.1) - l / 2.0).abs() < 0.01, "{m:?}");
            assert!((dist(&m, b.0, b.1) - l / 2.0).abs() < 0.01, "{m:?}");
            // Course is the azimuth of the geodesic at that point.
            let ahead = geo::inverse(m.lat, m.lon, b.0, b.1);
            let c = m.course_deg.unwrap();
            assert!(
                (c - geo::normalize_deg(ahead.azimuth1_deg)).abs() < 1e-6,
                "{c}"
            );
        }
        let mid = r.sample(t1 / 2.0);
        assert!((mid.alt_m - 42.0).abs() < 1e-9);

        // Arrival: at the waypoint (the dwell has begun).
        let a = r.sample(t1);
        assert!(dist(&a, 52.5215, 13.4090) < 0.01);
        assert_eq!((a.speed_mps, a.course_deg, a.alt_m), (0.0, None, 44.0));
        // Just before arrival: almost there, still moving.
        let b = r.sample(t1 - 1e-3);
        assert!(dist(&b, 52.5215, 13.4090) < 0.01 && b.speed_mps == 1.5);
        // End of the dwell: leaving.
        let l = r.sample(t2);
        assert!(dist(&l, 52.5215, 13.4090) < 1e-6 && l.speed_mps == 2.0);
        // End.
        let e = r.sample(t3);
        assert!(dist(&e, 52.5265, 13.4190) < 1e-6);
        assert_eq!((e.speed_mps, e.course_deg, e.alt_m), (0.0, None, 50.0));
        assert_eq!(r.sample(t3 + 1000.0), r.end());
        assert_eq!(r.sample(-5.0), r.start());
        assert_eq!(r.sample(f64::NAN), r.start());
        assert_eq!(r.sample(f64::INFINITY), r.end());
        assert_eq!(r.start().course_deg, None);
        assert_eq!(
            r.points(),
            vec![
                (HOME.0, HOME.1, 40.0),
                (52.5215, 13.4090, 44.0),
                (52.5265, 13.4190, 50.0)
            ]
        );
    }

    #[test]
    fn speed_is_constant_along_a_leg() {
        let r = three_legs();
        let t1 = r.sample(0.0);
        let mut prev = t1;
        for k in 1..100 {
            let t = k as f64 * 1.0;
            let s = r.sample(t);
            assert_eq!(s.speed_mps, 1.5);
            let step = geo::distance_m(prev.lat, prev.lon, s.lat, s.lon);
            assert!((step - 1.5).abs() < 1e-6, "t={t}: {step}");
            prev = s;
        }
    }

    #[test]
    fn dwell_is_still() {
        let r = three_legs();
        let t1 = geo::distance_m(HOME.0, HOME.1, 52.5215, 13.4090) / 1.5;
        for dt in [0.0, 1.0, 15.0, 29.999] {
            let s = r.sample(t1 + dt);
            assert!(dist(&s, 52.5215, 13.4090) < 0.01);
            assert_eq!(s.speed_mps, 0.0);
            assert_eq!(s.course_deg, None);
        }
        let stay = Route::stay("home", HOME.0, HOME.1, 40.0, 600.0);
        assert_eq!(stay.duration_s(), 600.0);
        assert_eq!(stay.length_m(), 0.0);
        assert_eq!(stay.sample(300.0), stay.start());
        assert_eq!(stay.sample(300.0).alt_m, 40.0);
        // Nonsense in, something usable out.
        let odd = Route::stay("x", f64::NAN, 190.0, f64::INFINITY, -3.0);
        assert_eq!(odd.duration_s(), 0.0);
        let s = odd.sample(1.0);
        assert_eq!((s.lat, s.alt_m), (0.0, 0.0));
        assert!((s.lon - -170.0).abs() < 1e-9);
    }

    #[test]
    fn antimeridian_and_pole_do_not_break() {
        // Across the antimeridian, eastbound.
        let r = Route::from_waypoints(
            "dateline",
            &[
                (10.0, 179.99, 0.0, 0.0, 0.0),
                (10.0, -179.99, 0.0, 10.0, 0.0),
            ],
        )
        .unwrap();
        assert!(
            r.length_m() > 2000.0 && r.length_m() < 2300.0,
            "{}",
            r.length_m()
        );
        let mut prev = r.sample(0.0);
        let mut t = 0.0;
        while t <= r.duration_s() + 1.0 {
            let s = r.sample(t);
            assert!(s.lon.abs() <= 180.0 && s.lat.is_finite());
            assert!(geo::distance_m(prev.lat, prev.lon, s.lat, s.lon) <= 10.0 + 1e-6);
            if let Some(c) = s.course_deg {
                assert!((c - 90.0).abs() < 0.1, "{c}");
            }
            prev = s;
            t += 1.0;
        }
        assert!(dist(&r.end(), 10.0, -179.99) < 1e-6);

        // Over the North Pole, and from the pole itself.
        let r = Route::from_waypoints(
            "pole",
            &[
                (89.99, 0.0, 0.0, 0.0, 0.0),
                (89.99, 180.0, 0.0, 5.0, 0.0),
                (90.0, 0.0, 0.0, 5.0, 0.0),
                (89.9, 45.0, 0.0, 5.0, 0.0),
            ],
        )
        .unwrap();
        assert!(r.duration_s().is_finite() && r.duration_s() > 0.0);
        let mut t = 0.0;
        let mut prev = r.sample(0.0);
        while t <= r.duration_s() + 1.0 {
            let s = r.sample(t);
            assert!(
                s.lat.is_finite() && s.lon.is_finite() && s.lat <= 90.0,
                "{t}: {s:?}"
            );
            assert!(s.course_deg.is_none_or(|c| (0.0..360.0).contains(&c)));
            assert!(geo::distance_m(prev.lat, prev.lon, s.lat, s.lon) <= 5.0 * 5.0 + 1e-6);
            prev = s;
            t += 5.0;
        }
        // The middle of the first leg is the pole.
        let leg = geo::distance_m(89.99, 0.0, 89.99, 180.0);
        let m = r.sample(leg / 2.0 / 5.0);
        assert!(m.lat > 89.99999, "{m:?}");
    }

    #[test]
    fn with_speed_rescales_moving_legs_only() {
        let r = three_legs();
        let fast = r.with_speed(3.0);
        let moving = r.length_m() / 3.0;
        assert!((fast.duration_s() - (moving + 30.0)).abs() < 1e-9);
        assert_eq!(fast.points(), r.points());
        assert_eq!(fast.sample(1.0).speed_mps, 3.0);
        assert_eq!(r.with_speed(0.0).duration_s(), r.duration_s());
        assert_eq!(r.with_speed(f64::NAN).duration_s(), r.duration_s());
    }

    #[test]
    fn from_waypoints_refuses_bad_input() {
        let ok = (HOME.0, HOME.1, 0.0, 1.0, 0.0);
        for (pts, what) in [
            (vec![], "no waypoints"),
            (vec![ok], "single waypoint"),
            (vec![ok, (91.0, 0.0, 0.0, 1.0, 0.0)], "latitude"),
            (vec![ok, (0.0, f64::NAN, 0.0, 1.0, 0.0)], "longitude"),
            (vec![ok, (0.0, 0.0, f64::INFINITY, 1.0, 0.0)], "altitude"),
            (vec![ok, (0.0, 0.0, 0.0, 0.0, 0.0)], "speed"),
            (vec![ok, (0.0, 0.0, 0.0, 1.0, -1.0)], "dwell"),
        ] {
            let e = Route::from_waypoints("x", &pts).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
        // A single waypoint with a dwell is a stay.
        let s = Route::from_waypoints("s", &[(HOME.0, HOME.1, 0.0, 0.0, 10.0)]).unwrap();
        assert_eq!(s.duration_s(), 10.0);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// (line, column, a piece of the message) of every error.
    fn errors_of(dir: &Path) -> Vec<(String, usize, usize, String)> {
        let e = RouteLibrary::load_dir(dir).unwrap_err();
        e.iter()
            .map(|e| {
                (
                    e.file.file_name().unwrap().to_string_lossy().into_owned(),
                    e.line,
                    e.column,
                    e.message.clone(),
                )
            })
            .collect()
    }

    fn expect(
        errors: &[(String, usize, usize, String)],
        file: &str,
        line: usize,
        column: usize,
        piece: &str,
    ) {
        assert!(
            errors
                .iter()
                .any(|(f, l, c, m)| f == file && *l == line && *c == column && m.contains(piece)),
            "no error {file}:{line}:{column} containing {piece:?} in {errors:#?}"
        );
    }

    #[test]
    fn every_semantic_error_at_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "places:
  home: { lat: 52.520008, lon: 13.404954, alt: 40 }
  Bad_Name: { lat: 1, lon: 2 }
  north: { lat: 95, lon: 13 }
  east: { lat: 52, lon: 181 }
  high: { lat: 52, lon: 13, alt: .inf }
routes:
  ok:
    speed_kmh: 5
    waypoints:
      - place: home
      - { lat: 52.5215, lon: 13.4090 }
  both:
    speed_kmh: 5
    waypoints:
      - { place: home, lat: 1, lon: 2 }
      - place: home
  unknown-place:
    speed_kmh: 5
    waypoints:
      - place: home
      - place: scool
  speeds:
    speed_kmh: 0
    waypoints:
      - { place: home, speed_kmh: 4 }
      - { lat: 52.5, lon: 13.4, speed_kmh: 1200 }
      - { lat: 52.6, lon: 13.4, dwell_s: -1 }
  no-speed:
    waypoints:
      - place: home
      - { lat: 52.5, lon: 13.4 }
      - { lat: 52.6, lon: 13.4, speed_kmh: 3 }
      - { lat: 52.7, lon: 13.4 }
  lonely:
    speed_kmh: 5
    waypoints:
      - place: home
  empty:
    waypoints: []
  half:
    speed_kmh: 5
    waypoints:
      - { lat: 52.5 }
      - { }
",
        );
        write(
            dir.path(),
            "b.yaml",
            "# more places
places:
  home: { lat: 1, lon: 1 }
routes:
  ok:
    speed_kmh: 5
    waypoints: [ { place: home }, { place: home } ]
",
        );
        let e = errors_of(dir.path());
        expect(&e, "a.yaml", 3, 3, "invalid place name `Bad_Name`");
        expect(&e, "a.yaml", 4, 17, "latitude 95");
        expect(&e, "a.yaml", 5, 25, "longitude 181");
        expect(&e, "a.yaml", 6, 34, "altitude inf");
        expect(&e, "a.yaml", 16, 9, "both `place` and");
        expect(
            &e,
            "a.yaml",
            22,
            16,
            "unknown place `scool`: expected one of the places of the directory: home",
        );
        expect(&e, "a.yaml", 24, 16, "speed_kmh is 0");
        expect(&e, "a.yaml", 26, 35, "speed_kmh on the first waypoint");
        expect(&e, "a.yaml", 27, 44, "speed_kmh is 1200");
        expect(&e, "a.yaml", 28, 42, "dwell_s is -1");
        expect(&e, "a.yaml", 29, 3, "leg(s) to waypoint(s) 2, 4 give none");
        expect(&e, "a.yaml", 38, 7, "single waypoint and no dwell");
        expect(&e, "a.yaml", 40, 16, "no waypoints");
        expect(&e, "a.yaml", 44, 9, "waypoint 1 has `lat` but no `lon`");
        expect(&e, "a.yaml", 45, 9, "waypoint 2 has no position");
        // Duplicates across files cite the first definition.
        let first =
            ConfigError::at(&dir.path().join("a.yaml"), Pos { line: 2, column: 3 }, "").location();
        expect(
            &e,
            "b.yaml",
            3,
            3,
            &format!("duplicate name `home`: already defined as a place at {first}"),
        );
        expect(
            &e,
            "b.yaml",
            5,
            3,
            "duplicate name `ok`: already defined as a route",
        );
        assert_eq!(e.len(), 17, "{e:#?}");
        // In file order, then by position.
        assert!(e.iter().take(15).all(|x| x.0 == "a.yaml"));
        let lines: Vec<usize> = e.iter().take(15).map(|x| x.1).collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    }

    #[test]
    fn type_errors_and_duplicate_keys_are_positioned() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "places:\n  home: { lat: 1, lon: 2, height: 3 }\n",
        );
        write(
            dir.path(),
            "b.yaml",
            "routes:\n  r:\n    speed: 5\n    waypoints: []\n",
        );
        write(
            dir.path(),
            "c.yaml",
            "places:\n  home2: { lat: 1, lon: 2 }\n  home2: { lat: 1, lon: 3 }\n",
        );
        write(dir.path(), "d.yaml", "places: [1, 2\n");
        write(dir.path(), "e.yaml", "# only a comment\n");
        write(dir.path(), "f.yaml", "");
        write(dir.path(), "README.md", "not: [yaml\n");
        let e = errors_of(dir.path());
        expect(&e, "a.yaml", 2, 27, "unknown field `height`");
        expect(&e, "b.yaml", 3, 5, "unknown field `speed`");
        expect(&e, "c.yaml", 3, 3, "duplicate key `home2` (first given at");
        assert!(e.iter().any(|x| x.0 == "d.yaml" && x.1 > 0), "{e:#?}");
        assert!(!e
            .iter()
            .any(|x| x.0 == "e.yaml" || x.0 == "f.yaml" || x.0 == "README.md"));
    }

    const GPX_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="redrig test" xmlns="http://www.topografix.com/GPX/1/1">
"#;

    #[test]
    fn gpx_tracks_become_routes_and_named_waypoints_places() {
        let dir = tempfile::tempdir().unwrap();
        // Timed, two segments, one zero-length time step.
        write(
            dir.path(),
            "Evening Walk.gpx",
            &format!(
                "{GPX_HEAD}<wpt lat=\"52.5\" lon=\"13.4\"><ele>35</ele><name>Ice Cream</name></wpt>
<wpt lat=\"52.6\" lon=\"13.5\"></wpt>
<trk><name>walk</name>
<trkseg>
<trkpt lat=\"52.5000\" lon=\"13.4000\"><ele>34</ele><time>2024-05-01T17:00:00Z</time></trkpt>
<trkpt lat=\"52.5001\" lon=\"13.4000\"><time>2024-05-01T17:00:10Z</time></trkpt>
</trkseg>
<trkseg>
<trkpt lat=\"52.5001\" lon=\"13.4002\"><ele>36</ele><time>2024-05-01T17:00:10Z</time></trkpt>
<trkpt lat=\"52.5002\" lon=\"13.4002\"><time>2024-05-01T17:00:30.5Z</time></trkpt>
</trkseg></trk>
<trk><trkseg><trkpt lat=\"1\" lon=\"1\"/></trkseg></trk>
</gpx>
"
            ),
        );
        // Untimed: one point lacks a time.
        write(
            dir.path(),
            "plain.gpx",
            &format!(
                "{GPX_HEAD}<trk><trkseg>
<trkpt lat=\"52.5\" lon=\"13.4\"><time>2024-05-01T17:00:00Z</time></trkpt>
<trkpt lat=\"52.501\" lon=\"13.4\"></trkpt>
</trkseg></trk></gpx>
"
            ),
        );
        let lib = RouteLibrary::load_dir(dir.path()).unwrap();
        assert_eq!(lib.route_names(), vec!["evening-walk", "plain"]);
        assert_eq!(lib.place_names(), vec!["ice-cream"]);
        assert_eq!(
            lib.place("ice-cream"),
            Some(&Place {
                name: "ice-cream".into(),
                lat: 52.5,
                lon: 13.4,
                alt_m: 35.0
            })
        );
        let r = lib.route("evening-walk").unwrap();
        assert!(r.is_timed());
        assert_eq!(r.description, "walk");
        assert!(r.source.ends_with("Evening Walk.gpx"));
        assert!((r.duration_s() - 30.5).abs() < 1e-9);
        assert_eq!(r.points().len(), 4);
        // Reached at their timestamps.
        assert!(dist(&r.sample(10.0), 52.5001, 13.4002) < 1e-6);
        assert!(dist(&r.sample(9.999), 52.5001, 13.4000) < 0.01);
        let mid = r.sample(5.0);
        let d01 = geo::distance_m(52.5, 13.4, 52.5001, 13.4);
        assert!((mid.speed_mps - d01 / 10.0).abs() < 1e-9);
        assert!((dist(&mid, 52.5, 13.4) - d01 / 2.0).abs() < 0.01);
        // Altitude: missing <ele> takes the previous one.
        assert_eq!(r.points()[1].2, 34.0);
        assert_eq!(r.end().alt_m, 36.0);

        let p = lib.route("plain").unwrap();
        assert!(!p.is_timed());
        assert!((p.sample(1.0).speed_mps - 5.0 / 3.6).abs() < 1e-12);
        assert!((p.duration_s() - p.length_m() / (5.0 / 3.6)).abs() < 1e-9);
        // with_speed works on timed routes too.
        let w = r.with_speed(2.0);
        assert!(!w.is_timed());
        assert!((w.duration_s() - r.length_m() / 2.0).abs() < 1e-9);
    }

    #[test]
    fn gpx_errors_are_reported_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "back.gpx",
            &format!(
                "{GPX_HEAD}<trk><trkseg>
<trkpt lat=\"52.5\" lon=\"13.4\"><time>2024-05-01T17:00:10Z</time></trkpt>
<!-- <trkpt lat=\"0\" lon=\"0\"> in a comment -->
<trkpt lat=\"52.501\" lon=\"13.4\"><time>2024-05-01T17:00:20Z</time></trkpt>
  <trkpt lat=\"52.502\" lon=\"13.4\"><time>2024-05-01T17:00:15Z</time></trkpt>
</trkseg></trk></gpx>
"
            ),
        );
        write(
            dir.path(),
            "broken.gpx",
            &format!("{GPX_HEAD}<trk><trkseg>\n<trkpt lat=\"52.5\"></trkpt>\n"),
        );
        write(dir.path(), "notxml.gpx", "\u{0}\u{1}garbage<<<>>>&&&");
        write(
            dir.path(),
            "range.gpx",
            &format!(
                "{GPX_HEAD}<trk><trkseg>\n<trkpt lat='52.5' lon=\"13.4\"/>\n  <trkpt  lat = \"52.5\" lon=\"181\"/>\n</trkseg></trk></gpx>"
            ),
        );
        write(
            dir.path(),
            "one.gpx",
            &format!(
                "{GPX_HEAD}<trk><trkseg><trkpt lat=\"52.5\" lon=\"13.4\"/></trkseg></trk></gpx>"
            ),
        );
        write(
            dir.path(),
            "home.gpx",
            &format!("{GPX_HEAD}<wpt lat=\"52.5\" lon=\"13.4\"><name>home</name></wpt></gpx>"),
        );
        write(
            dir.path(),
            "places.yaml",
            "places:\n  home: { lat: 1, lon: 1 }\n",
        );
        let e = errors_of(dir.path());
        expect(
            &e,
            "back.gpx",
            7,
            3,
            "track point 2 (counting from 0) goes back in time",
        );
        expect(
            &e,
            "broken.gpx",
            4,
            1,
            "cannot read GPX: invalid element, `waypoint` lacks required attribute `longitude`",
        );
        expect(
            &e,
            "range.gpx",
            5,
            3,
            "cannot read GPX: invalid `Longitude`",
        );
        assert!(
            e.iter()
                .any(|x| x.0 == "notxml.gpx" && x.3.starts_with("cannot read GPX")),
            "{e:#?}"
        );
        expect(&e, "one.gpx", 3, 1, "track has 1 point(s)");
        expect(
            &e,
            "places.yaml",
            2,
            3,
            "duplicate name `home`: already defined as a place at",
        );
        assert!(e.iter().any(|x| x.3.contains("home.gpx:3:1")), "{e:#?}");
    }

    /// Every prefix of the shipped files, and a few byte-level manglings, load to
    /// errors or to a library, never to a panic.
    #[test]
    fn truncated_and_mangled_files_never_panic() {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/routes");
        let dir = tempfile::tempdir().unwrap();
        for name in ["family-routes.yaml", "playground-walk.gpx"] {
            let text = std::fs::read_to_string(src.join(name)).unwrap();
            let mut cuts: Vec<usize> = (0..text.len()).step_by(13).collect();
            cuts.push(text.len());
            for cut in cuts.into_iter().filter(|c| text.is_char_boundary(*c)) {
                for variant in [
                    text[..cut].to_string(),
                    format!("{}\u{0}{}", &text[..cut], &text[cut..]),
                    text[..cut].replace('"', "'").replace(':', "::"),
                ] {
                    write(dir.path(), name, &variant);
                    let _ = RouteLibrary::load_dir(dir.path());
                }
            }
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }

    #[test]
    fn missing_directory_is_an_error_not_a_panic() {
        let e = RouteLibrary::load_dir(Path::new("/nonexistent/redrig/routes")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e.to_string().contains("cannot read routes directory"));
        let lib = RouteLibrary::empty();
        assert!(lib.place_names().is_empty() && lib.route("x").is_none());
    }

    #[test]
    fn names_from_gpx() {
        assert_eq!(gpx_name("Playground Walk"), "playground-walk");
        assert_eq!(gpx_name("Über_2"), "-ber-2");
        assert!(valid_name("a-1") && !valid_name("") && !valid_name("A") && !valid_name("a b"));
    }

    #[test]
    fn shipped_routes_load_without_errors() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/routes");
        let lib = RouteLibrary::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        for p in ["home", "school", "park", "grandma", "station", "far-away"] {
            assert!(lib.place(p).is_some(), "place {p} missing");
        }
        let home = lib.place("home").unwrap();
        assert_eq!(
            (home.lat, home.lon, home.alt_m),
            (52.520008, 13.404954, 40.0)
        );
        let from_home = |n: &str| {
            let p = lib.place(n).unwrap();
            geo::distance_m(home.lat, home.lon, p.lat, p.lon)
        };
        let school = from_home("school");
        assert!((1000.0..1400.0).contains(&school), "school {school}");
        let grandma = from_home("grandma");
        assert!((3500.0..4500.0).contains(&grandma), "grandma {grandma}");
        assert!(from_home("far-away") > 200_000.0);
        for r in [
            "school-run",
            "park-loop",
            "bus-to-grandma",
            "leaves-school-zone",
            "playground-walk",
        ] {
            let route = lib.route(r).unwrap_or_else(|| panic!("route {r} missing"));
            assert!(route.duration_s() > 0.0 && route.length_m() > 0.0, "{r}");
            assert!(!route.description.is_empty(), "{r}: no description");
        }
        let run = lib.route("school-run").unwrap();
        assert!(dist(&run.start(), home.lat, home.lon) < 1e-6);
        let s = lib.place("school").unwrap();
        assert!(dist(&run.end(), s.lat, s.lon) < 1e-6);
        let walking = run.sample(10.0).speed_mps * 3.6;
        assert!((4.0..=6.0).contains(&walking), "{walking}");
        let loop_ = lib.route("park-loop").unwrap();
        assert!(dist(&loop_.end(), home.lat, home.lon) < 1e-6);
        let bus = lib.route("bus-to-grandma").unwrap();
        let top = (0..bus.duration_s() as usize)
            .map(|t| bus.sample(t as f64).speed_mps * 3.6)
            .fold(0.0, f64::max);
        assert!((20.0..=30.0).contains(&top), "{top}");
        let g = lib.place("grandma").unwrap();
        assert!(dist(&bus.end(), g.lat, g.lon) < 1e-6);
        let leave = lib.route("leaves-school-zone").unwrap();
        assert!(dist(&leave.start(), s.lat, s.lon) < 1e-6);
        let away = dist(&leave.end(), s.lat, s.lon);
        assert!((550.0..800.0).contains(&away), "{away}");
        let pw = lib.route("playground-walk").unwrap();
        assert!(pw.is_timed() && pw.points().len() >= 15);
    }
}
