//! Who may do what on the backend: safe zones only the parent may move, pairing only
//! with the code from the watch's box, no administrator role for the asking, password
//! guessing stopped, and an account deleted with everything it could see.
//!
//! Several steps act as "that account": a throwaway account the rig registers on the
//! backend for the scenario (a random `probe-…@example.org` address and a strong
//! random password), never one of the profile's test accounts, so that whatever a
//! defective backend lets it keep (a paired watch, an administrator role, a lock-out)
//! ends with the scenario. The account is deleted through `DELETE /api/account` when
//! the scenario ends, passed or failed.
//!
//! What an account gains is judged against a baseline, so that a defect of another
//! requirement is not blamed here: pairing attempts and the administrator role must
//! let an account see no more of the watch than it (or a freshly registered account of
//! no family) saw before — a backend that shows every account every watch fails the
//! scenario on access between families, not this one — and a deleted account's token
//! must get no more than a token the backend never issued. Password guessing counts
//! the wrong passwords answered with a plain 401 before the first lock-out answer
//! (403, 423, 429 or 503); any other answer to a wrong password is inconclusive.
//!
//! Everything here goes through the parent API (`docs/virtual-hardware.md` §9).

use super::common::*;
use crate::drivers::ApiResponse;
use crate::runner::world::{device_fail, rig_fail, RigWorld, RunContext, StepFail, StepResult};
use cucumber::{given, then, when};
use serde_json::{json, Value};
use std::sync::Arc;

/// Key of the throwaway account's token in [`RigWorld::tokens`].
const OWN: &str = "own account";
/// Scratch keys.
const OWN_EMAIL: &str = "access.email";
const OWN_PASSWORD: &str = "access.password";
const OWN_USER_ID: &str = "access.user_id";
/// The role the last sign-in of that account was granted.
const OWN_ROLE: &str = "access.role";
/// The safe zones the parent saw before anyone else tried to replace them (JSON).
const ZONES_BEFORE: &str = "access.zones_before";
/// What an account saw of the watch before (see [`View`]), and whose view it was.
const BASELINE: &str = "access.baseline";
const BASELINE_KIND: &str = "access.baseline_kind";
/// The wrong passwords the backend checked before it first locked the account out.
const GUESSES_CHECKED: &str = "access.guesses_checked";

/// Radius of the safe zone another party tries to put in place of the parent's.
const FOREIGN_ZONE_RADIUS_M: u32 = 1000;

/// 128 bits in hex, unpredictable enough for a test account's address and password:
/// the standard library's randomly keyed hasher over the time and a counter.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut out = String::with_capacity(32);
    for half in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(n);
        h.write_u8(half);
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// A strong password: upper and lower case, digits and symbols, 24 characters.
fn strong_password() -> String {
    format!("Kp7#{}-zQ", &random_hex()[..16])
}

/// A short excerpt of an answer body for a message.
fn excerpt(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

/// A JSON id (string or number) as a string.
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_success(r: &ApiResponse) -> bool {
    (200..300).contains(&r.status)
}

/// Whether a successful answer carries anything (an empty list or object is nothing).
fn serves_something(r: &ApiResponse) -> bool {
    is_success(r)
        && match &r.body {
            Value::Null => false,
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::String(s) => !s.trim().is_empty(),
            _ => true,
        }
}

fn own_credentials(world: &RigWorld) -> Result<(String, String), StepFail> {
    match (
        world.scratch.get(OWN_EMAIL),
        world.scratch.get(OWN_PASSWORD),
    ) {
        (Some(e), Some(p)) => Ok((e.clone(), p.clone())),
        _ => rig_fail("no account of its own was registered before this step"),
    }
}

fn own_token(world: &RigWorld) -> Result<String, StepFail> {
    match world.tokens.get(OWN) {
        Some(t) => Ok(t.clone()),
        None => rig_fail("that account holds no token (it was not signed in before this step)"),
    }
}

/// An API request with that account's token; the answer is kept for later steps.
async fn own_api(
    world: &mut RigWorld,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<ApiResponse, StepFail> {
    let token = own_token(world)?;
    let r = world
        .rig()
        .backend
        .request(method, path, Some(&token), body.as_ref())
        .await?;
    world.note(format!("that account: {method} {path} → HTTP {}", r.status));
    world.last_response = Some(r.clone());
    Ok(r)
}

/// A sign-in attempt; `path` may carry a query.
async fn login(world: &RigWorld, path: &str, body: &Value) -> Result<ApiResponse, StepFail> {
    Ok(world
        .rig()
        .backend
        .request("POST", path, None, Some(body))
        .await?)
}

/// Delete a throwaway account after the scenario, signed in afresh (see below). An
/// account that can no longer sign in is gone already.
async fn delete_account(
    ctx: Arc<RunContext>,
    email: String,
    password: String,
) -> crate::error::RigResult<()> {
    let backend = &ctx.rig.backend;
    // Always with a token from a fresh sign-in: the scenario's own token may belong to
    // an account that deleted itself, and a backend that does not check tokens would
    // take a DELETE with it as one from somebody else (on the virtual lab's lax
    // backends: the watch owner's account).
    let body = json!({ "email": email, "password": password });
    // A lock-out the scenario provoked ends within a few device minutes.
    let deadline = ctx.clock.deadline(180.0);
    loop {
        let r = backend
            .request("POST", "/api/login", None, Some(&body))
            .await?;
        if let Some(t) = r.body.get("token").and_then(Value::as_str) {
            let d = backend
                .request("DELETE", "/api/account", Some(t), None)
                .await?;
            return if (200..300).contains(&d.status) {
                Ok(())
            } else {
                Err(crate::error::RigError::Other(format!(
                    "test account {email} could not be deleted: HTTP {} {}",
                    d.status,
                    excerpt(&d.body)
                )))
            };
        }
        if r.status != 429 || tokio::time::Instant::now() >= deadline {
            // Refused for good: the account no longer exists.
            return Ok(());
        }
        ctx.clock.sleep(5.0).await;
    }
}

// ------------------------------------------------------------------ an account of its own

/// A throwaway account, registered and signed in.
struct Throwaway {
    email: String,
    password: String,
    user_id: Option<String>,
    token: String,
    /// The role the sign-in answer names (empty when it names none).
    role: String,
}

/// Register and sign in a throwaway account (asking for the administrator role at
/// registration when `asking_admin`), and have it deleted when the scenario ends.
async fn register_throwaway(
    world: &mut RigWorld,
    asking_admin: bool,
) -> Result<Throwaway, StepFail> {
    let email = format!("probe-{}@example.org", &random_hex()[..16]);
    let password = strong_password();
    let plain = json!({ "email": email, "password": password });
    let mut r = None;
    if asking_admin {
        // The role asked for both in the query and in the body.
        let body = json!({ "email": email, "password": password, "role": "admin" });
        let answer = world
            .rig()
            .backend
            .request("POST", "/api/register?role=admin", None, Some(&body))
            .await?;
        world.note(format!(
            "registering {email} asking for the administrator role → HTTP {}",
            answer.status
        ));
        if is_success(&answer) {
            r = Some(answer);
        } else {
            // Refusing the parameter is a fine answer; the account is then
            // registered as anyone would be.
            world.note(format!(
                "the backend refused the registration with the role parameter: {}",
                excerpt(&answer.body)
            ));
        }
    }
    let r = match r {
        Some(r) => r,
        None => {
            world
                .rig()
                .backend
                .request("POST", "/api/register", None, Some(&plain))
                .await?
        }
    };
    if !is_success(&r) {
        return rig_fail(format!(
            "the backend did not register a test account {email} with a strong password: HTTP {} {}",
            r.status,
            excerpt(&r.body)
        ));
    }
    let l = login(world, "/api/login", &plain).await?;
    let token = l
        .body
        .get("token")
        .and_then(Value::as_str)
        .map(String::from);
    {
        let (email, password) = (email.clone(), password.clone());
        world.on_scenario_end(format!("delete the test account {email}"), move |ctx| {
            delete_account(ctx, email, password)
        });
    }
    let Some(token) = token else {
        return rig_fail(format!(
            "the new test account {email} cannot sign in (HTTP {}): {}",
            l.status,
            excerpt(&l.body)
        ));
    };
    world.note(format!("registered and signed in as {email}"));
    Ok(Throwaway {
        user_id: id_string(&r.body["user_id"]).or_else(|| id_string(&l.body["user_id"])),
        role: l.body["role"].as_str().unwrap_or("").to_string(),
        email,
        password,
        token,
    })
}

#[given(
    regex = r"^a new account of its own on the backend( registered asking for the administrator role)?$"
)]
async fn new_account(world: &mut RigWorld, asking_admin: String) -> StepResult {
    if world.scratch.contains_key(OWN_EMAIL) {
        return rig_fail("this scenario already has an account of its own");
    }
    let t = register_throwaway(world, !asking_admin.is_empty()).await?;
    world.scratch.insert(OWN_EMAIL.into(), t.email);
    world.scratch.insert(OWN_PASSWORD.into(), t.password);
    if let Some(id) = t.user_id {
        world.scratch.insert(OWN_USER_ID.into(), id);
    }
    world.scratch.insert(OWN_ROLE.into(), t.role);
    world.tokens.insert(OWN.into(), t.token);
    Ok(())
}

/// What an account sees of the watch: whether its list includes the watch, and
/// whether the backend lets it read the watch's details and its location history
/// (a 2xx answer, even an empty list, is access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    listed: bool,
    details: bool,
    history: bool,
}

impl View {
    fn encode(self) -> String {
        format!("{},{},{}", self.listed, self.details, self.history)
    }

    fn decode(s: &str) -> Option<View> {
        let mut it = s.split(',').map(|b| b.parse::<bool>().ok());
        Some(View {
            listed: it.next()??,
            details: it.next()??,
            history: it.next()??,
        })
    }

    /// What `self` sees that `before` did not.
    fn gained_over(self, before: View) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listed && !before.listed {
            out.push("its watch list includes the watch");
        }
        if self.details && !before.details {
            out.push("it may read the watch's details");
        }
        if self.history && !before.history {
            out.push("it may read the watch's location history");
        }
        out
    }
}

/// What the holder of `token` sees of the watch.
async fn view_with(world: &mut RigWorld, token: &str) -> Result<View, StepFail> {
    let id = watch_id(world).await?;
    let imei = world.ctx.loaded.device.device.imei.clone();
    let backend = &world.rig().backend;
    let list = backend
        .request("GET", "/api/watches", Some(token), None)
        .await?;
    let details = backend
        .request("GET", &format!("/api/watches/{id}"), Some(token), None)
        .await?;
    let history = backend
        .request(
            "GET",
            &format!("/api/watches/{id}/locations"),
            Some(token),
            None,
        )
        .await?;
    let view = View {
        listed: is_success(&list)
            && list
                .body
                .as_array()
                .is_some_and(|a| a.iter().any(|w| w["imei"].as_str() == Some(imei.as_str()))),
        details: is_success(&details),
        history: is_success(&history),
    };
    world.note(format!(
        "seen of the watch: list HTTP {}, details HTTP {}, location history HTTP {} → {view:?}",
        list.status, details.status, history.status
    ));
    Ok(view)
}

#[given("what that account sees of the watch is noted")]
async fn note_own_view(world: &mut RigWorld) -> StepResult {
    let token = own_token(world)?;
    let view = view_with(world, &token).await?;
    world.scratch.insert(BASELINE.into(), view.encode());
    world.scratch.insert(BASELINE_KIND.into(), "before".into());
    Ok(())
}

#[given("what a new account of no family sees of the watch is noted")]
async fn note_stranger_view(world: &mut RigWorld) -> StepResult {
    // A second throwaway account, registered as anyone would: what the backend
    // shows an account that has paired nothing.
    let t = register_throwaway(world, false).await?;
    let view = view_with(world, &t.token).await?;
    world.scratch.insert(BASELINE.into(), view.encode());
    world
        .scratch
        .insert(BASELINE_KIND.into(), "a new account of no family".into());
    Ok(())
}

#[then(
    regex = r"^that account sees no more of the watch than (before|a new account of no family)$"
)]
async fn sees_no_more(world: &mut RigWorld, than: String) -> StepResult {
    let (Some(kind), Some(before)) = (
        world.scratch.get(BASELINE_KIND).cloned(),
        world.scratch.get(BASELINE).and_then(|v| View::decode(v)),
    ) else {
        return rig_fail("what an account sees of the watch was not noted before this step");
    };
    if kind != than {
        return rig_fail(format!(
            "the scenario noted what {kind} sees, not what {than} sees"
        ));
    }
    let token = own_token(world)?;
    let now = view_with(world, &token).await?;
    let gained = now.gained_over(before);
    ensure_device(gained.is_empty(), || {
        format!(
            "the account now sees more of another family's watch than {than}: {}",
            gained.join("; ")
        )
    })
}

#[when("that account signs in asking for the administrator role")]
async fn sign_in_as_admin(world: &mut RigWorld) -> StepResult {
    let (email, password) = own_credentials(world)?;
    let body = json!({ "email": email, "password": password, "role": "admin" });
    let r = login(world, "/api/login?role=admin", &body).await?;
    world.note(format!(
        "signing in asking for the administrator role → HTTP {}",
        r.status
    ));
    let r = if r.body.get("token").and_then(Value::as_str).is_some() {
        r
    } else {
        // Refusing the parameter is a fine answer; sign in as anyone would.
        world.note(format!(
            "the backend refused the sign-in with the role parameter: {}",
            excerpt(&r.body)
        ));
        let plain = json!({ "email": email, "password": password });
        login(world, "/api/login", &plain).await?
    };
    let Some(token) = r.body.get("token").and_then(Value::as_str) else {
        return rig_fail(format!(
            "the test account cannot sign in (HTTP {}): {}",
            r.status,
            excerpt(&r.body)
        ));
    };
    world.tokens.insert(OWN.into(), token.to_string());
    let role = r.body["role"].as_str().unwrap_or("").to_string();
    world.scratch.insert(OWN_ROLE.into(), role);
    world.last_response = Some(r);
    Ok(())
}

#[then("the backend did not make that account an administrator")]
async fn not_admin(world: &mut RigWorld) -> StepResult {
    let Some(role) = world.scratch.get(OWN_ROLE).cloned() else {
        return rig_fail("that account did not sign in asking for a role before this step");
    };
    ensure_device(role != "admin", || {
        "the backend made the new account an administrator because it asked for the role"
            .to_string()
    })
}

#[when("that account lists the watches on its own account")]
async fn own_list(world: &mut RigWorld) -> StepResult {
    own_api(world, "GET", "/api/watches", None).await?;
    Ok(())
}

#[when(regex = r"^that account requests the watch's (location history|details|alarms)$")]
async fn own_read(world: &mut RigWorld, what: String) -> StepResult {
    let id = watch_id(world).await?;
    let path = match what.as_str() {
        "location history" => format!("/api/watches/{id}/locations"),
        "alarms" => format!("/api/watches/{id}/alarms"),
        _ => format!("/api/watches/{id}"),
    };
    own_api(world, "GET", &path, None).await?;
    Ok(())
}

// ------------------------------------------------------------------ pairing

/// A pairing request for the watch, addressed by its IMEI (as a parent who has not
/// paired yet would address it).
async fn pair(world: &mut RigWorld, body: Value) -> Result<ApiResponse, StepFail> {
    let imei = world.ctx.loaded.device.device.imei.clone();
    own_api(
        world,
        "POST",
        &format!("/api/watches/{imei}/pair"),
        Some(body),
    )
    .await
}

#[when("that account asks to pair the watch by its IMEI with its own user id instead of the pairing code")]
async fn pair_with_user_id(world: &mut RigWorld) -> StepResult {
    let Some(user_id) = world.scratch.get(OWN_USER_ID).cloned() else {
        return rig_fail("the backend gave the test account no user id");
    };
    let imei = world.ctx.loaded.device.device.imei.clone();
    // The user id where the code belongs, and as a field of its own.
    let body = json!({ "imei": imei, "user_id": user_id, "code": user_id });
    pair(world, body).await?;
    Ok(())
}

#[when("that account asks to pair the watch by its IMEI with a wrong pairing code")]
async fn pair_with_wrong_code(world: &mut RigWorld) -> StepResult {
    let right = match &world.ctx.loaded.device.device.backend.pairing_code {
        Some(s) => Some(crate::config::resolve_secret(s).map_err(StepFail::Rig)?),
        None => None,
    };
    // A code of the same shape that is not the right one.
    let mut wrong: String = right
        .as_deref()
        .unwrap_or("000000")
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_digit((d + 5) % 10, 10).unwrap_or('0'),
            None => 'x',
        })
        .collect();
    if wrong.is_empty() || right.as_deref() == Some(wrong.as_str()) {
        wrong = "wrong-code".into();
    }
    let imei = world.ctx.loaded.device.device.imei.clone();
    pair(world, json!({ "imei": imei, "code": wrong })).await?;
    Ok(())
}

#[given("that account has paired the watch with the pairing code from the watch's box")]
async fn pair_with_code(world: &mut RigWorld) -> StepResult {
    let Some(code) = world.ctx.loaded.device.device.backend.pairing_code.clone() else {
        return Err(StepFail::NotApplicable(
            "the device profile gives no pairing code (device.backend.pairing_code), so the rig cannot give a second account the watch's data"
                .into(),
        ));
    };
    let code = crate::config::resolve_secret(&code).map_err(StepFail::Rig)?;
    let imei = world.ctx.loaded.device.device.imei.clone();
    let r = pair(world, json!({ "imei": imei, "code": code })).await?;
    if !is_success(&r) {
        return rig_fail(format!(
            "the backend refused pairing with the profile's pairing code (HTTP {}): {}; check device.backend.pairing_code",
            r.status,
            excerpt(&r.body)
        ));
    }
    Ok(())
}

#[given(expr = "that account sees the watch's location history within {int} seconds")]
async fn sees_history(world: &mut RigWorld, secs: u32) -> StepResult {
    let imei = world.ctx.loaded.device.device.imei.clone();
    let deadline = world.clock().deadline(secs as f64);
    loop {
        let list = own_api(world, "GET", "/api/watches", None).await?;
        let id = list.body.as_array().and_then(|ws| {
            ws.iter()
                .find(|w| w["imei"].as_str() == Some(imei.as_str()))
                .and_then(|w| id_string(&w["id"]))
        });
        if let Some(id) = id {
            let r = own_api(world, "GET", &format!("/api/watches/{id}/locations"), None).await?;
            if r.status == 200 && r.body.as_array().is_some_and(|a| !a.is_empty()) {
                world.scratch.insert("access.own_watch_id".into(), id);
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return rig_fail(format!(
                "the test account saw no location history of the watch within {secs} s of pairing; nothing to delete"
            ));
        }
        world.clock().sleep(1.0).await;
    }
}

// ------------------------------------------------------------------ deletion

#[when("that account deletes itself")]
async fn delete_itself(world: &mut RigWorld) -> StepResult {
    let r = own_api(world, "DELETE", "/api/account", None).await?;
    ensure_device(is_success(&r), || {
        format!(
            "the backend refused to delete the account: HTTP {} {}",
            r.status,
            excerpt(&r.body)
        )
    })
}

#[then("signing in as that account is refused")]
async fn sign_in_refused(world: &mut RigWorld) -> StepResult {
    let (email, password) = own_credentials(world)?;
    let body = json!({ "email": email, "password": password });
    let r = login(world, "/api/login", &body).await?;
    world.note(format!(
        "signing in as the deleted account → HTTP {}",
        r.status
    ));
    let signed_in = is_success(&r) || r.body.get("token").and_then(Value::as_str).is_some();
    world.last_response = Some(r.clone());
    ensure_device(!signed_in, || {
        format!(
            "the deleted account still signs in with its password: HTTP {}",
            r.status
        )
    })
}

#[then("the token that account held gets no more from the backend than a token it never issued")]
async fn old_token_gets_nothing(world: &mut RigWorld) -> StepResult {
    let id = match world.scratch.get("access.own_watch_id").cloned() {
        Some(id) => id,
        None => watch_id(world).await?,
    };
    let imei = world.ctx.loaded.device.device.imei.clone();
    // Whether an answer carries the watch's data: the list with the watch in it, or
    // anything at all from the watch's own paths.
    let carries = |path: &str, r: &ApiResponse| {
        if path == "/api/watches" {
            is_success(r)
                && r.body
                    .as_array()
                    .is_some_and(|a| a.iter().any(|w| w["imei"].as_str() == Some(imei.as_str())))
        } else {
            serves_something(r)
        }
    };
    // 64 hex digits of the same shape as a real token, from nothing the backend issued:
    // what the deleted account's token serves beyond what this one serves is what the
    // deletion left behind (a backend that serves anyone fails authentication, not
    // deletion).
    let made_up = random_hex().repeat(2);
    let mut served = Vec::new();
    for path in [
        "/api/watches".to_string(),
        format!("/api/watches/{id}"),
        format!("/api/watches/{id}/locations"),
        format!("/api/watches/{id}/alarms"),
    ] {
        let r = own_api(world, "GET", &path, None).await?;
        if !carries(&path, &r) {
            continue;
        }
        let other = world
            .rig()
            .backend
            .request("GET", &path, Some(&made_up), None)
            .await?;
        world.note(format!("made-up token: GET {path} → HTTP {}", other.status));
        if carries(&path, &other) {
            continue;
        }
        served.push(format!(
            "GET {path} → HTTP {}: {}",
            r.status,
            excerpt(&r.body)
        ));
    }
    ensure_device(served.is_empty(), || {
        format!(
            "the deleted account's token still gets data: {}",
            served.join("; ")
        )
    })
}

// ------------------------------------------------------------------ password guessing

#[when(expr = "someone tries {int} wrong passwords on that account")]
async fn guess_passwords(world: &mut RigWorld, n: u32) -> StepResult {
    if !(1..=100).contains(&n) {
        return rig_fail(format!("{n} guesses: expected 1 to 100"));
    }
    let (email, password) = own_credentials(world)?;
    let mut checked_before_lockout: Option<u32> = None;
    let mut checked = 0u32;
    let mut statuses = Vec::new();
    for i in 0..n {
        let guess = format!("Wrong-Guess-{i:02}x");
        if guess == password {
            continue;
        }
        let body = json!({ "email": email, "password": guess });
        let r = login(world, "/api/login", &body).await?;
        statuses.push(r.status.to_string());
        if is_success(&r) || r.body.get("token").and_then(Value::as_str).is_some() {
            world.last_response = Some(r.clone());
            return device_fail(format!(
                "the backend signed in with a wrong password (HTTP {})",
                r.status
            ));
        }
        match r.status {
            // A plain "wrong password": the guess was checked.
            401 => checked += 1,
            // Too many attempts, forbidden for now, locked, try later: not checked.
            403 | 423 | 429 | 503 => {
                checked_before_lockout.get_or_insert(checked);
            }
            other => {
                return rig_fail(format!(
                    "the backend answered a sign-in with a wrong password with HTTP {other} (neither a refusal of the password nor a lock-out): {}",
                    excerpt(&r.body)
                ))
            }
        }
        world.last_response = Some(r);
    }
    world.note(format!("{n} wrong passwords → HTTP {}", statuses.join(" ")));
    world.note(format!(
        "wrong passwords answered as checked (HTTP 401) in all: {checked} of {n}"
    ));
    world.scratch.insert(
        GUESSES_CHECKED.into(),
        checked_before_lockout.unwrap_or(checked).to_string(),
    );
    world.scratch.insert(
        "access.locked_out".into(),
        checked_before_lockout.is_some().to_string(),
    );
    world.action_at = Some(world.now());
    Ok(())
}

#[then(expr = "the backend stops checking passwords after at most {int} wrong ones")]
async fn stops_checking(world: &mut RigWorld, limit: u32) -> StepResult {
    let Some(checked) = world
        .scratch
        .get(GUESSES_CHECKED)
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return rig_fail("no passwords were guessed before this step");
    };
    let locked = world.scratch.get("access.locked_out").map(String::as_str) == Some("true");
    let within = world.measure(
        "wrong passwords accepted for checking before lock-out",
        checked as f64,
        "passwords",
        Some(limit as f64),
    );
    ensure_device(locked && within, || {
        if locked {
            format!("the backend checked {checked} wrong passwords before it locked the account (at most {limit} allowed)")
        } else {
            format!(
                "the backend checked all {checked} wrong passwords and never locked the account"
            )
        }
    })
}

#[then(expr = "that account can sign in with its password again within {int} seconds")]
async fn can_sign_in_again(world: &mut RigWorld, secs: u32) -> StepResult {
    let (email, password) = own_credentials(world)?;
    let body = json!({ "email": email, "password": password });
    let since = world.action_at.unwrap_or(world.started);
    let deadline = world.clock().deadline(secs as f64);
    loop {
        let r = login(world, "/api/login", &body).await?;
        if let Some(t) = r.body.get("token").and_then(Value::as_str) {
            world.tokens.insert(OWN.into(), t.to_string());
            let waited = world.now().saturating_sub(since) as f64 / 1000.0;
            world.measure(
                "time until the owner could sign in again",
                waited,
                "s",
                Some(secs as f64),
            );
            world.last_response = Some(r);
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let status = r.status;
            world.last_response = Some(r);
            return device_fail(format!(
                "the owner still cannot sign in with the right password {secs} s after the guesses stopped (HTTP {status})"
            ));
        }
        world.clock().sleep(5.0).await;
    }
}

// ------------------------------------------------------------------ safe zones

/// The parent's safe zones as comparable values (name, position, radius).
fn zones_of(details: &Value) -> Vec<(String, String, String, String)> {
    let mut zones: Vec<_> = details["geofences"]
        .as_array()
        .map(|a| {
            a.iter()
                .take(100)
                .map(|z| {
                    (
                        z["name"].to_string(),
                        z["lat"].to_string(),
                        z["lon"].to_string(),
                        z["radius_m"].to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    zones.sort();
    zones
}

async fn parent_details(world: &mut RigWorld) -> Result<Value, StepFail> {
    let id = watch_id(world).await?;
    let token = token_for(world, Actor::Parent).await?;
    let r = world
        .rig()
        .backend
        .request("GET", &format!("/api/watches/{id}"), token.as_deref(), None)
        .await?;
    if r.status != 200 {
        return rig_fail(format!(
            "the parent cannot read the watch's details: HTTP {} {}",
            r.status,
            excerpt(&r.body)
        ));
    }
    Ok(r.body)
}

#[when(
    regex = r#"^(the parent|the stranger|an unauthenticated client) replaces the watch's safe zones with one around "([^"]*)"$"#
)]
async fn replace_zones(world: &mut RigWorld, who: String, place: String) -> StepResult {
    let actor = Actor::parse(&who)?;
    let Some(p) = world.ctx.loaded.routes.place(&place) else {
        return rig_fail(format!(
            "no place `{place}` in the routes directory; known places: {}",
            world.ctx.loaded.routes.place_names().join(", ")
        ));
    };
    let (lat, lon) = (p.lat, p.lon);
    let id = watch_id(world).await?;
    if !world.scratch.contains_key(ZONES_BEFORE) {
        let before = parent_details(world).await?["geofences"].clone();
        world
            .scratch
            .insert(ZONES_BEFORE.into(), before.to_string());
        // Whatever the attempt changes, the parent's zones are put back afterwards.
        let restore = if before.is_array() { before } else { json!([]) };
        let watch = id.clone();
        world.on_scenario_end("put back the parent's safe zones", move |ctx| async move {
            let token = ctx
                .strategy
                .lock()
                .await
                .parent_token(&ctx.rig, &ctx.loaded)
                .await?;
            let path = format!("/api/watches/{watch}");
            let now = ctx
                .rig
                .backend
                .request("GET", &path, Some(&token), None)
                .await?;
            if zones_of(&now.body) == zones_of(&json!({ "geofences": restore })) {
                return Ok(());
            }
            let r = ctx
                .rig
                .backend
                .request(
                    "PUT",
                    &format!("{path}/geofences"),
                    Some(&token),
                    Some(&restore),
                )
                .await?;
            if (200..300).contains(&r.status) {
                Ok(())
            } else {
                Err(crate::error::RigError::Other(format!(
                    "the backend refused the parent's safe zones: HTTP {}",
                    r.status
                )))
            }
        });
    }
    let body = json!([{
        "name": format!("{place} (not the parent's)"),
        "lat": lat,
        "lon": lon,
        "radius_m": FOREIGN_ZONE_RADIUS_M,
    }]);
    api(
        world,
        actor,
        "PUT",
        &format!("/api/watches/{id}/geofences"),
        Some(body),
    )
    .await?;
    Ok(())
}

#[then("the parent still sees the safe zones they had set")]
async fn zones_unchanged(world: &mut RigWorld) -> StepResult {
    let Some(before) = world.scratch.get(ZONES_BEFORE).cloned() else {
        return rig_fail("nobody tried to replace the safe zones before this step");
    };
    let before: Value = serde_json::from_str(&before).unwrap_or(Value::Null);
    let now = parent_details(world).await?;
    let (was, is) = (zones_of(&json!({ "geofences": before })), zones_of(&now));
    ensure_device(was == is, || {
        format!(
            "the watch's safe zones changed: the parent had set {}, the backend now shows {}",
            excerpt(&before),
            excerpt(&now["geofences"])
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_differ_and_passwords_are_strong() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let p = strong_password();
        assert!(p.len() >= 10);
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| c.is_ascii_digit()));
        assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
    }

    #[test]
    fn a_view_gains_only_what_it_did_not_have() {
        let none = View {
            listed: false,
            details: false,
            history: false,
        };
        let listed = View {
            listed: true,
            ..none
        };
        let all = View {
            listed: true,
            details: true,
            history: true,
        };
        assert!(none.gained_over(none).is_empty());
        assert!(listed.gained_over(listed).is_empty());
        assert!(listed.gained_over(all).is_empty());
        assert_eq!(listed.gained_over(none).len(), 1);
        assert_eq!(all.gained_over(listed).len(), 2);
        assert_eq!(View::decode(&all.encode()), Some(all));
        assert_eq!(View::decode(&none.encode()), Some(none));
        assert_eq!(View::decode("true,false"), None);
        assert_eq!(View::decode("yes,no,maybe"), None);
    }

    #[test]
    fn empty_answers_serve_nothing() {
        let r = |status, body| ApiResponse { status, body };
        assert!(!serves_something(&r(200, json!([]))));
        assert!(!serves_something(&r(200, Value::Null)));
        assert!(!serves_something(&r(401, json!({ "error": "x" }))));
        assert!(serves_something(&r(200, json!([{ "lat": 1.0 }]))));
        assert!(serves_something(&r(200, json!({ "id": "1" }))));
    }

    #[test]
    fn zones_compare_by_content_not_order() {
        let a = json!({ "geofences": [
            { "name": "school", "lat": 1.5, "lon": 2.5, "radius_m": 50 },
            { "name": "home", "lat": 3.0, "lon": 4.0, "radius_m": 80 },
        ]});
        let b = json!({ "geofences": [
            { "name": "home", "lat": 3.0, "lon": 4.0, "radius_m": 80 },
            { "name": "school", "lat": 1.5, "lon": 2.5, "radius_m": 50 },
        ]});
        let c = json!({ "geofences": [
            { "name": "school", "lat": 1.5, "lon": 2.5, "radius_m": 1000 },
        ]});
        assert_eq!(zones_of(&a), zones_of(&b));
        assert_ne!(zones_of(&a), zones_of(&c));
        assert!(zones_of(&json!({})).is_empty());
    }
}
