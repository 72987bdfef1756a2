//! Who calls the REST API, and what they may do.
//!
//! A caller is an [`Identity`]: a user name and groups, as in Kuma. The admin token
//! (`DATA_DIR/admin-token`) is the user `mesh-system:admin` in the group `mesh-system:admin`; a
//! user token carries its own name and groups, plus the implicit `mesh-system:authenticated`;
//! a caller without a token is `mesh-system:anonymous` in `mesh-system:unauthenticated`, except
//! on loopback when loopback-is-admin is on (the default, as in Kuma).
//!
//! An [`RbacPolicy`] then decides each [`Action`]: reads and writes per kind (and mesh), and token
//! minting. Its rules come from a YAML or JSON file (`ATOLL_API_RBAC_FILE`, format in README.md)
//! or the defaults, which are Kuma's: admins may do everything; everyone else may read
//! everything except Secrets and GlobalSecrets.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use atoll_core::Kind;

pub const ADMIN_USER: &str = "mesh-system:admin";
pub const ADMIN_GROUP: &str = "mesh-system:admin";
pub const AUTHENTICATED_GROUP: &str = "mesh-system:authenticated";
pub const ANONYMOUS_USER: &str = "mesh-system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "mesh-system:unauthenticated";

/// A caller of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// The bootstrap admin: the admin token's holder, or a loopback caller when loopback is admin.
    pub fn admin() -> Self {
        Self {
            name: ADMIN_USER.into(),
            groups: vec![ADMIN_GROUP.into(), AUTHENTICATED_GROUP.into()],
        }
    }

    /// A caller without credentials.
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS_USER.into(),
            groups: vec![UNAUTHENTICATED_GROUP.into()],
        }
    }

    /// The holder of a valid user token: its groups plus `mesh-system:authenticated`.
    pub fn user(name: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.into());
        }
        Self { name, groups }
    }

    pub fn is_anonymous(&self) -> bool {
        self.groups.iter().any(|g| g == UNAUTHENTICATED_GROUP)
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// GET of resources (one, lists, overviews, a dataplane's config and rules).
    Read,
    /// PUT and DELETE of resources, signing-key rotation and token revocation (which write
    /// Secrets / GlobalSecrets).
    Write,
    GenerateDataplaneToken,
    GenerateZoneToken,
    GenerateUserToken,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::Write,
        Action::GenerateDataplaneToken,
        Action::GenerateZoneToken,
        Action::GenerateUserToken,
    ];

    /// The action's name in rule files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::GenerateDataplaneToken => "generate-dataplane-token",
            Action::GenerateZoneToken => "generate-zone-token",
            Action::GenerateUserToken => "generate-user-token",
        }
    }

    fn from_name(name: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// One rule: who (users or groups), may do what (actions), on which kinds and meshes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// None: every action.
    actions: Option<BTreeSet<Action>>,
    /// None: every kind.
    kinds: Option<BTreeSet<Kind>>,
    except_kinds: BTreeSet<Kind>,
    /// None: every mesh.
    meshes: Option<BTreeSet<String>>,
}

impl Rule {
    fn admits(
        &self,
        who: &Identity,
        action: Action,
        kind: Option<Kind>,
        mesh: Option<&str>,
    ) -> bool {
        let subject = self.users.contains(&who.name)
            || self.users.contains("*")
            || who.groups.iter().any(|g| self.groups.contains(g));
        let action_ok = self.actions.as_ref().is_none_or(|a| a.contains(&action));
        let kind_ok = match kind {
            Some(k) => {
                self.kinds.as_ref().is_none_or(|ks| ks.contains(&k))
                    && !self.except_kinds.contains(&k)
            }
            // Token minting has no kind: a rule narrowed to some kinds does not grant it.
            None => self.kinds.is_none(),
        };
        let mesh_ok = match (&self.meshes, mesh) {
            (None, _) => true,
            (Some(meshes), Some(m)) => meshes.contains(m),
            // A rule narrowed to meshes grants nothing global or across meshes.
            (Some(_), None) => false,
        };
        subject && action_ok && kind_ok && mesh_ok
    }
}

/// The rules the API applies. The group `mesh-system:admin` is always allowed everything, so
/// the bootstrap admin token cannot be locked out by a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacPolicy {
    rules: Vec<Rule>,
    /// Where the rules came from, for messages.
    pub source: String,
}

impl Default for RbacPolicy {
    /// Kuma's defaults: admins everything; authenticated and anonymous callers may read
    /// everything but Secrets and GlobalSecrets.
    fn default() -> Self {
        Self {
            rules: vec![Rule {
                users: BTreeSet::new(),
                groups: [AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP]
                    .map(String::from)
                    .into(),
                actions: Some([Action::Read].into()),
                kinds: None,
                except_kinds: [Kind::Secret, Kind::GlobalSecret].into(),
                meshes: None,
            }],
            source: "the default rules".into(),
        }
    }
}

/// Why a rule file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("cannot read the RBAC rule file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the RBAC rule file {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rules: Vec<RuleDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleDoc {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    actions: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    except_kinds: Vec<String>,
    #[serde(default)]
    meshes: Vec<String>,
}

impl RbacPolicy {
    /// Reads a rule file (YAML or JSON); its rules replace the defaults.
    pub fn from_file(path: &Path) -> Result<Self, RbacError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RbacError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown).map_err(|reason| RbacError::Invalid {
            path: shown,
            reason,
        })
    }

    /// Parses rule-file text; the error names the offending field.
    pub fn parse(text: &str, source: &str) -> Result<Self, String> {
        let file: RuleFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for (i, doc) in file.rules.into_iter().enumerate() {
            let at = |field: &str| format!("rules[{i}].{field}");
            if doc.users.is_empty() && doc.groups.is_empty() {
                return Err(format!(
                    "rules[{i}]: names no users and no groups, so it applies to nobody"
                ));
            }
            if doc.actions.is_empty() {
                return Err(format!(
                    "{}: must list actions ({} or *)",
                    at("actions"),
                    action_names()
                ));
            }
            let actions = if doc.actions.iter().any(|a| a == "*") {
                None
            } else {
                let mut set = BTreeSet::new();
                for a in &doc.actions {
                    set.insert(Action::from_name(a).ok_or_else(|| {
                        format!(
                            "{}: unknown action {a:?}; known: {}, *",
                            at("actions"),
                            action_names()
                        )
                    })?);
                }
                Some(set)
            };
            let kinds = |names: &[String], field: &str| -> Result<BTreeSet<Kind>, String> {
                names
                    .iter()
                    .map(|n| {
                        Kind::from_name(n)
                            .or_else(|| Kind::from_plural(n))
                            .ok_or_else(|| {
                                format!(
                                    "{}: unknown kind {n:?} (use names such as MeshTimeout or Secret)",
                                    at(field)
                                )
                            })
                    })
                    .collect()
            };
            let all_kinds = doc.kinds.is_empty() || doc.kinds.iter().any(|k| k == "*");
            rules.push(Rule {
                users: doc.users.into_iter().collect(),
                groups: doc.groups.into_iter().collect(),
                actions,
                kinds: if all_kinds {
                    None
                } else {
                    Some(kinds(&doc.kinds, "kinds")?)
                },
                except_kinds: kinds(&doc.except_kinds, "exceptKinds")?,
                meshes: (!doc.meshes.is_empty() && !doc.meshes.iter().any(|m| m == "*"))
                    .then(|| doc.meshes.into_iter().collect()),
            });
        }
        Ok(Self {
            rules,
            source: source.to_string(),
        })
    }

    /// Whether `who` may do `action` (on `kind` in `mesh`, when the action concerns resources).
    pub fn allows(
        &self,
        who: &Identity,
        action: Action,
        kind: Option<Kind>,
        mesh: Option<&str>,
    ) -> bool {
        who.groups.iter().any(|g| g == ADMIN_GROUP)
            || self.rules.iter().any(|r| r.admits(who, action, kind, mesh))
    }
}

fn action_names() -> String {
    Action::ALL
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the API authenticates and authorizes callers.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Loopback callers without a token are admins (`ATOLL_API_LOOPBACK_ADMIN`).
    pub loopback_admin: bool,
    pub rbac: RbacPolicy,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            loopback_admin: true,
            rbac: RbacPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity::user("alice".into(), vec!["team-a".into()])
    }

    #[test]
    fn defaults_are_kumas() {
        let p = RbacPolicy::default();
        for who in [alice(), Identity::anonymous()] {
            assert!(p.allows(&who, Action::Read, Some(Kind::MeshTimeout), Some("m")));
            assert!(p.allows(&who, Action::Read, Some(Kind::Zone), None));
            assert!(!p.allows(&who, Action::Read, Some(Kind::Secret), Some("m")));
            assert!(!p.allows(&who, Action::Read, Some(Kind::GlobalSecret), None));
            assert!(!p.allows(&who, Action::Write, Some(Kind::MeshTimeout), Some("m")));
            assert!(!p.allows(&who, Action::GenerateUserToken, None, None));
        }
        let admin = Identity::admin();
        assert!(p.allows(&admin, Action::Read, Some(Kind::Secret), Some("m")));
        assert!(p.allows(&admin, Action::GenerateZoneToken, None, None));
    }

    #[test]
    fn rule_files_grant_by_group_kind_and_mesh() {
        let p = RbacPolicy::parse(
            r#"
rules:
- groups: [team-a]
  actions: [read, write, generate-dataplane-token]
  kinds: [MeshTimeout, dataplanes]
  meshes: [a]
- users: [bob]
  actions: ["*"]
  exceptKinds: [Secret]
"#,
            "test",
        )
        .expect("valid");
        let a = alice();
        assert!(p.allows(&a, Action::Write, Some(Kind::MeshTimeout), Some("a")));
        assert!(p.allows(&a, Action::Read, Some(Kind::Dataplane), Some("a")));
        assert!(!p.allows(&a, Action::Write, Some(Kind::MeshTimeout), Some("b")));
        assert!(!p.allows(&a, Action::Write, Some(Kind::MeshRetry), Some("a")));
        // Narrowed to kinds: no token minting, even though the action is listed.
        assert!(!p.allows(&a, Action::GenerateDataplaneToken, None, Some("a")));
        // The file replaced the defaults: anonymous reads are gone.
        assert!(!p.allows(&Identity::anonymous(), Action::Read, Some(Kind::Mesh), None));
        let bob = Identity::user("bob".into(), vec![]);
        assert!(p.allows(&bob, Action::GenerateUserToken, None, None));
        assert!(p.allows(&bob, Action::Write, Some(Kind::GlobalSecret), None));
        assert!(!p.allows(&bob, Action::Read, Some(Kind::Secret), Some("a")));
        // Admins stay admins whatever the file says.
        assert!(p.allows(
            &Identity::admin(),
            Action::Read,
            Some(Kind::Secret),
            Some("a")
        ));
    }

    #[test]
    fn bad_rule_files_name_the_field() {
        for (text, expected) in [
            (
                "rules:\n- groups: [g]\n  actions: [delete]\n",
                "rules[0].actions: unknown action \"delete\"",
            ),
            (
                "rules:\n- groups: [g]\n  actions: [read]\n  kinds: [Mesh, Nope]\n",
                "rules[0].kinds: unknown kind \"Nope\"",
            ),
            (
                "rules:\n- actions: [read]\n",
                "rules[0]: names no users and no groups",
            ),
            (
                "rules:\n- groups: [g]\n  actions: [read]\n  mesh: [a]\n",
                "mesh",
            ),
        ] {
            let err = RbacPolicy::parse(text, "t").expect_err(text);
            assert!(err.contains(expected), "{err}");
        }
    }
}
