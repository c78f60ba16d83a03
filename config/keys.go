package config

import (
	"errors"
	"strconv"
	"strings"

	"github.com/pbac-gateway/pbac/identity"
)

// Key is one setting that the environment or a flag can set: its key in
// the file (dotted for nested ones), the PBAC_* environment variable that
// overrides the file, the flag that overrides both (pbac up's, or pbac
// asrv's where pbac up has none), the flag's default and what the setting
// does. Keys is the one table of them:
// ApplyEnv, EnvOverrides and pbac config check's listing are produced from
// it, and a test holds pbac up's flags to it.
type Key struct {
	Name    string
	Env     string // "" when no environment variable sets it
	Flag    string // "" when no flag sets it
	Default string // as the flag shows it; "" when it has none
	Doc     string
	// Secret marks a value that may carry a password (shown redacted).
	Secret bool

	set func(c *File, v string) error // applies an environment value
	get func(c *File) string          // the value in the file ("" unset)
}

// Keys returns the table of settings, in the order pbac config check
// lists them.
func Keys() []Key {
	out := make([]Key, len(keys))
	copy(out, keys)
	return out
}

// Lookup returns the key named name (its file key).
func Lookup(name string) (Key, bool) {
	for _, k := range keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// FromFile is the key's value in c (the file with the environment
// applied); "" when it is not set there.
func (k Key) FromFile(c *File) string {
	if c == nil || k.get == nil {
		return ""
	}
	return k.get(c)
}

var errNotANumber = errors.New("want a number")

// str is a key held in a string field of the file.
func str(field func(c *File) *string) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error { *field(c) = v; return nil },
		func(c *File) string { return *field(c) }
}

// list is a key held in a list field, comma-separated in the environment.
func list(field func(c *File) *[]string) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error { *field(c) = strings.Split(v, ","); return nil },
		func(c *File) string { return strings.Join(*field(c), ",") }
}

// number is a key held in an int field of the limits.
func number(field func(l *Limits) *int) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errNotANumber
			}
			*field(c.limits()) = n
			return nil
		}, func(c *File) string {
			if c.Limits == nil || *field(c.Limits) == 0 {
				return ""
			}
			return strconv.Itoa(*field(c.Limits))
		}
}

func tlsFile(files func(c *File) **TLSFiles, cert bool) (func(*File, string) error, func(*File) string) {
	pick := func(t *TLSFiles) *string {
		if cert {
			return &t.CertFile
		}
		return &t.KeyFile
	}
	return func(c *File, v string) error {
			*files(c) = withDefault(*files(c))
			*pick(*files(c)) = v
			return nil
		}, func(c *File) string {
			if *files(c) == nil {
				return ""
			}
			return *pick(*files(c))
		}
}

// asrvStr is a key held in a string field of the asrv: section.
func asrvStr(field func(a *ASrv) *string) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error { *field(c.asrv()) = v; return nil },
		func(c *File) string {
			if c.ASrv == nil {
				return ""
			}
			return *field(c.ASrv)
		}
}

func policyStr(field func(p *Policy) *string) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error { *field(c.policy()) = v; return nil },
		func(c *File) string {
			if c.Policy == nil {
				return ""
			}
			return *field(c.Policy)
		}
}

// key builds a table row from its setter and getter.
func key(name, env, flag, def, doc string, sg func() (func(*File, string) error, func(*File) string)) Key {
	k := Key{Name: name, Env: env, Flag: flag, Default: def, Doc: doc}
	k.set, k.get = sg()
	return k
}

// keys is the table. Defaults are those of pbac up's flags.
var keys = []Key{
	key("listen", "PBAC_LISTEN", "listen", "127.0.0.1:8080", "address of the gateway and authorization server",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.Listen })
		}),
	key("admin_listen", "PBAC_ADMIN_LISTEN", "admin-listen", "127.0.0.1:8081", "address of the admin API and the dashboard",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.AdminListen })
		}),
	key("data_dir", "PBAC_DATA_DIR", "data-dir", "", "data directory (default ~/.local/share/pbac)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.DataDir })
		}),
	withSecret(key("store", "PBAC_STORE", "store", "", "token store: a postgres:// URL shared by replicas (default: Badger under the data dir)",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error { c.Store, c.StoreFile = v, ""; return nil },
				func(c *File) string { return c.Store }
		})),
	key("store_file", "PBAC_STORE_FILE", "", "", "a file holding the store URL (instead of store)",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error { c.Store, c.StoreFile = "", v; return nil },
				func(c *File) string { return c.StoreFile }
		}),
	key("public_url", "PBAC_PUBLIC_URL", "issuer", "", "the gateway's URL as clients reach it, the authorization server's issuer (default http(s)://<listen>)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.PublicURL })
		}),
	key("demo_agents", "PBAC_DEMO_AGENTS", "", "", "register the demo agents (claude-code, ci-bot, security-scanner, autonomous-planner) and keep their credentials in the data dir (default: as demo)",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error {
					b, err := strconv.ParseBool(v)
					if err != nil {
						return errors.New("want true or false")
					}
					c.DemoAgents = &b
					return nil
				}, func(c *File) string {
					if c.DemoAgents == nil {
						return ""
					}
					return strconv.FormatBool(*c.DemoAgents)
				}
		}),
	key("admin_pprof", "PBAC_ADMIN_PPROF", "", "false", "serve Go's runtime profiles (CPU, heap, goroutine, mutex, block, trace) on the admin API at /admin/debug/pprof/, behind the admin token, and record mutex and block events for them",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error {
					b, err := strconv.ParseBool(v)
					if err != nil {
						return errors.New("want true or false")
					}
					c.AdminPprof = b
					return nil
				}, func(c *File) string {
					if !c.AdminPprof {
						return ""
					}
					return "true"
				}
		}),
	key("tls.cert_file", "PBAC_TLS_CERT", "tls-cert", "", "certificate (PEM) of the gateway listener; reloaded on change",
		func() (func(*File, string) error, func(*File) string) {
			return tlsFile(func(c *File) **TLSFiles { return &c.TLS }, true)
		}),
	key("tls.key_file", "PBAC_TLS_KEY", "tls-key", "", "private key (PEM) of tls.cert_file",
		func() (func(*File, string) error, func(*File) string) {
			return tlsFile(func(c *File) **TLSFiles { return &c.TLS }, false)
		}),
	key("admin_tls.cert_file", "PBAC_ADMIN_TLS_CERT", "admin-tls-cert", "", "certificate (PEM) of the admin listener",
		func() (func(*File, string) error, func(*File) string) {
			return tlsFile(func(c *File) **TLSFiles { return &c.AdminTLS }, true)
		}),
	key("admin_tls.key_file", "PBAC_ADMIN_TLS_KEY", "admin-tls-key", "", "private key (PEM) of admin_tls.cert_file",
		func() (func(*File, string) error, func(*File) string) {
			return tlsFile(func(c *File) **TLSFiles { return &c.AdminTLS }, false)
		}),
	key("log_level", "PBAC_LOG_LEVEL", "log-level", "info", "debug, info, warn or error",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.LogLevel })
		}),
	key("log_format", "PBAC_LOG_FORMAT", "log-format", "text", "text, or json (one object a line)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.LogFormat })
		}),
	key("denials", "PBAC_DENIALS", "", "tool_error", "how a tools/call policy denies (and no scope would fix) is answered: tool_error (a tool result with isError, the reasons as its text) or http_403 (a JSON-RPC error)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.Denials })
		}),
	key("session_idle", "PBAC_SESSION_IDLE", "", "30m", "an MCP session unused this long ends; the client's next request on it is answered 404 and it initializes a new one",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.SessionIdle })
		}),
	key("approvals_url", "PBAC_APPROVALS_URL", "", "", "the approval page's base as approvers reach it; a held call's approval id is appended (default: <admin URL>/ui/approvals/)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.ApprovalsURL })
		}),
	key("approvals_wait", "PBAC_APPROVALS_WAIT", "", "10s", "how long a client's retry of a held call waits for its pending approval before it is told to ask again (at most 2m)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.ApprovalsWait })
		}),
	key("approvals_state_key_file", "PBAC_APPROVALS_STATE_KEY_FILE", "", "", "the key (32 bytes, mode 0600) that signs the requestState of held calls, created if missing (default: approval-state.key in the data dir; replicas share one file)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.ApprovalsStateKeyFile })
		}),
	key("scopes_supported", "PBAC_SCOPES_SUPPORTED", "", "", "scopes the protected resource metadata advertises, comma-separated (default: every scope of the active policy); the authorization server still grants any the policy allows, so a call needing another is a step-up",
		func() (func(*File, string) error, func(*File) string) {
			return list(func(c *File) *[]string { return &c.ScopesSupported })
		}),
	key("drain_delay", "PBAC_DRAIN_DELAY", "drain-delay", "0s", "on SIGTERM, /readyz answers 503 this long before the listeners close",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.DrainDelay })
		}),
	key("audit_linger", "PBAC_AUDIT_LINGER", "audit-linger", "20ms", "how long the audit writer waits after a record for more to write with it, at most 1s; 0s writes each record as soon as nothing else is queued (a crash then loses fewer records; every call costs a write)",
		func() (func(*File, string) error, func(*File) string) {
			return str(func(c *File) *string { return &c.AuditLinger })
		}),
	key("policy.bundle_server", "PBAC_BUNDLE_SERVER", "bundle-server", "", "poll this bundle server's /bundles/pbac for the policy",
		func() (func(*File, string) error, func(*File) string) {
			return policyStr(func(p *Policy) *string { return &p.BundleServer })
		}),
	key("policy.bundle_poll_interval", "PBAC_BUNDLE_POLL_INTERVAL", "bundle-poll-interval", "30s", "how often to poll the bundle server",
		func() (func(*File, string) error, func(*File) string) {
			return policyStr(func(p *Policy) *string { return &p.BundlePollInterval })
		}),
	key("policy.bundle_token_file", "PBAC_BUNDLE_TOKEN_FILE", "bundle-token-file", "", "the read-only bundle token, from a file",
		func() (func(*File, string) error, func(*File) string) {
			return policyStr(func(p *Policy) *string { return &p.BundleTokenFile })
		}),
	key("policy.verification_keys", "PBAC_BUNDLE_VERIFICATION_KEYS", "bundle-verification-key", "", "public keys (KEYID=FILE) every bundle must be signed with",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error { c.policy().VerificationKeys = strings.Split(v, ","); return nil },
				func(c *File) string {
					if c.Policy == nil {
						return ""
					}
					return strings.Join(c.Policy.VerificationKeys, ",")
				}
		}),
	key("policy.sync", "PBAC_POLICY_SYNC", "policy-sync", "true", "with a PostgreSQL store, one policy version on every replica",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error {
					b, err := strconv.ParseBool(v)
					if err != nil {
						return errors.New("want true or false")
					}
					c.policy().Sync = &b
					return nil
				}, func(c *File) string {
					if c.Policy == nil || c.Policy.Sync == nil {
						return ""
					}
					return strconv.FormatBool(*c.Policy.Sync)
				}
		}),
	key("policy.sync_interval", "PBAC_POLICY_SYNC_INTERVAL", "policy-sync-interval", "2s", "policy sync heartbeat and fallback poll",
		func() (func(*File, string) error, func(*File) string) {
			return policyStr(func(p *Policy) *string { return &p.SyncInterval })
		}),
	key("policy.decision_timeout", "PBAC_POLICY_DECISION_TIMEOUT", "policy-decision-timeout", "1s", "bound of one policy decision, the wait for an instance included; then a deny",
		func() (func(*File, string) error, func(*File) string) {
			return policyStr(func(p *Policy) *string { return &p.DecisionTimeout })
		}),
	key("policy.eval_timeout", "PBAC_POLICY_EVAL_TIMEOUT", "policy-eval-timeout", "100ms", "CPU time one policy evaluation may use (one held up on a busy host stops at ten times it), at most policy.decision_timeout",
		func() (func(*File, string) error, func(*File) string) {
			return policyStr(func(p *Policy) *string { return &p.EvalTimeout })
		}),
	key("admin_hosts", "PBAC_ADMIN_HOSTS", "", "", "host names the admin listener answers to besides its address",
		func() (func(*File, string) error, func(*File) string) {
			return list(func(c *File) *[]string { return &c.AdminHosts })
		}),
	key("identity.users_file", "PBAC_USERS_FILE", "", "", "a users file (pbac user add) people sign in from with a password; re-read when it changes",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error { c.identity().UsersFile = v; return nil },
				func(c *File) string {
					if c.Identity == nil {
						return ""
					}
					return c.Identity.UsersFile
				}
		}),
	key("identity.oidc.issuer", "PBAC_OIDC_ISSUER", "", "", "the organisation's OpenID Connect provider people sign in at (single sign-on); register public_url + /oauth2/idp/callback there as the redirect URI",
		func() (func(*File, string) error, func(*File) string) {
			return oidcStr(func(o *identity.OIDCConfig) *string { return &o.Issuer })
		}),
	key("identity.oidc.client_id", "PBAC_OIDC_CLIENT_ID", "", "", "the authorization server's client id at the provider",
		func() (func(*File, string) error, func(*File) string) {
			return oidcStr(func(o *identity.OIDCConfig) *string { return &o.ClientID })
		}),
	key("identity.oidc.client_secret_file", "PBAC_OIDC_CLIENT_SECRET_FILE", "", "", "a file holding that client's secret (none: a public client, PKCE alone)",
		func() (func(*File, string) error, func(*File) string) {
			return oidcStr(func(o *identity.OIDCConfig) *string { return &o.ClientSecretFile })
		}),
	key("identity.oidc.scopes", "PBAC_OIDC_SCOPES", "", strings.Join(identity.DefaultScopes, ","), "scopes asked of the provider (must include openid)",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error { c.oidc().Scopes = strings.Split(v, ","); return nil },
				func(c *File) string {
					if c.Identity == nil || c.Identity.OIDC == nil {
						return ""
					}
					return strings.Join(c.Identity.OIDC.Scopes, ",")
				}
		}),
	key("identity.oidc.groups_claim", "PBAC_OIDC_GROUPS_CLAIM", "", identity.DefaultGroupsClaim, "the ID token claim holding the person's groups (policy data maps them to roles)",
		func() (func(*File, string) error, func(*File) string) {
			return oidcStr(func(o *identity.OIDCConfig) *string { return &o.GroupsClaim })
		}),
	key("identity.oidc.subject_claim", "PBAC_OIDC_SUBJECT_CLAIM", "", identity.DefaultSubjectClaim, "the ID token claim that becomes the person's subject (e.g. email, where unique and never reassigned)",
		func() (func(*File, string) error, func(*File) string) {
			return oidcStr(func(o *identity.OIDCConfig) *string { return &o.SubjectClaim })
		}),
	key("asrv.max_sign_in_age", "PBAC_MAX_SIGN_IN_AGE", "", "24h", "how long a person's sign-in lasts: a refresh (or ID-JAG) of an older one is refused and they sign in again, which re-reads their groups",
		func() (func(*File, string) error, func(*File) string) {
			return asrvStr(func(a *ASrv) *string { return &a.MaxSignInAge })
		}),
	key("asrv.access_token_ttl", "PBAC_ACCESS_TOKEN_TTL", "", "10m", "an access token's lifetime at most (the policy's token_ttl_seconds may shorten it per agent); then the client refreshes",
		func() (func(*File, string) error, func(*File) string) {
			return asrvStr(func(a *ASrv) *string { return &a.AccessTokenTTL })
		}),
	key("asrv.refresh_reuse_grace", "PBAC_REFRESH_REUSE_GRACE", "", "10s", "how long after a refresh token was rotated its own client may present it again and get a new pair (clients that refresh several at once); beyond, reuse revokes the grant; 0: never, 1m at most",
		func() (func(*File, string) error, func(*File) string) {
			return asrvStr(func(a *ASrv) *string { return &a.RefreshReuseGrace })
		}),
	key("clients.metadata_documents.enabled", "PBAC_METADATA_DOCUMENTS", "", "true", "resolve client ids that are https URLs as Client ID Metadata Documents",
		func() (func(*File, string) error, func(*File) string) {
			return metadataBool(func(m *MetadataDocuments) **bool { return &m.Enabled })
		}),
	key("clients.metadata_documents.fetch", "PBAC_METADATA_DOCUMENTS_FETCH", "", "true", "fetch documents that are not pinned (false: air-gapped, pinned documents only)",
		func() (func(*File, string) error, func(*File) string) {
			return metadataBool(func(m *MetadataDocuments) **bool { return &m.Fetch })
		}),
	key("clients.metadata_documents.allow_networks", "PBAC_METADATA_DOCUMENTS_ALLOW_NETWORKS", "", "", "CIDR blocks (loopback, private…) documents may be fetched from nonetheless; every other special-purpose address is refused",
		func() (func(*File, string) error, func(*File) string) {
			return func(c *File, v string) error { c.metadataDocuments().AllowNetworks = strings.Split(v, ","); return nil },
				func(c *File) string {
					if c.Clients == nil || c.Clients.MetadataDocuments == nil {
						return ""
					}
					return strings.Join(c.Clients.MetadataDocuments.AllowNetworks, ",")
				}
		}),
	key("clients.metadata_documents.ca_file", "PBAC_METADATA_DOCUMENTS_CA_FILE", "", "", "PEM CA certificates: the only ones trusted for fetched documents (default: the system's)",
		func() (func(*File, string) error, func(*File) string) {
			return metadataStr(func(m *MetadataDocuments) *string { return &m.CAFile })
		}),
	key("clients.metadata_documents.pinned_dir", "PBAC_METADATA_DOCUMENTS_PINNED_DIR", "", "", "a directory of pinned documents: every *.json file is the document of the URL in its own client_id, never fetched",
		func() (func(*File, string) error, func(*File) string) {
			return metadataStr(func(m *MetadataDocuments) *string { return &m.PinnedDir })
		}),
	key("limits.sessions_per_agent", "PBAC_SESSIONS_PER_AGENT", "", strconv.Itoa(DefaultSessionsPerAgent), "MCP sessions one agent holds; beyond, its least recently used one ends",
		func() (func(*File, string) error, func(*File) string) {
			return number(func(l *Limits) *int { return &l.SessionsPerAgent })
		}),
	key("limits.stdio_sessions", "PBAC_STDIO_SESSIONS", "", strconv.Itoa(DefaultStdioSessions), "processes of one stdio backend at once",
		func() (func(*File, string) error, func(*File) string) {
			return number(func(l *Limits) *int { return &l.StdioSessions })
		}),
	key("limits.stdio_sessions_per_agent", "PBAC_STDIO_SESSIONS_PER_AGENT", "", strconv.Itoa(DefaultStdioSessionsPerAgent), "processes one agent holds on one stdio backend",
		func() (func(*File, string) error, func(*File) string) {
			return number(func(l *Limits) *int { return &l.StdioSessionsPerAgent })
		}),
}

// metadataStr is a key held in a string field of
// clients.metadata_documents.
func metadataStr(field func(m *MetadataDocuments) *string) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error { *field(c.metadataDocuments()) = v; return nil },
		func(c *File) string {
			if c.Clients == nil || c.Clients.MetadataDocuments == nil {
				return ""
			}
			return *field(c.Clients.MetadataDocuments)
		}
}

// metadataBool is a key held in a boolean field of
// clients.metadata_documents.
func metadataBool(field func(m *MetadataDocuments) **bool) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("want true or false")
			}
			*field(c.metadataDocuments()) = &b
			return nil
		}, func(c *File) string {
			if c.Clients == nil || c.Clients.MetadataDocuments == nil || *field(c.Clients.MetadataDocuments) == nil {
				return ""
			}
			return strconv.FormatBool(**field(c.Clients.MetadataDocuments))
		}
}

func withSecret(k Key) Key {
	k.Secret = true
	return k
}

// oidcStr is a key held in a string field of identity.oidc.
func oidcStr(field func(o *identity.OIDCConfig) *string) (func(*File, string) error, func(*File) string) {
	return func(c *File, v string) error { *field(c.oidc()) = v; return nil },
		func(c *File) string {
			if c.Identity == nil || c.Identity.OIDC == nil {
				return ""
			}
			return *field(c.Identity.OIDC)
		}
}

func (c *File) identity() *identity.Config {
	if c.Identity == nil {
		c.Identity = &identity.Config{}
	}
	return c.Identity
}

func (c *File) oidc() *identity.OIDCConfig {
	if id := c.identity(); id.OIDC == nil {
		id.OIDC = &identity.OIDCConfig{}
	}
	return c.Identity.OIDC
}

func (c *File) asrv() *ASrv {
	if c.ASrv == nil {
		c.ASrv = &ASrv{}
	}
	return c.ASrv
}

func (c *File) limits() *Limits {
	if c.Limits == nil {
		c.Limits = &Limits{}
	}
	return c.Limits
}
