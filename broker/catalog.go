package broker

// catalog is a valid config compiled for lookups: role → backend → driver,
// each by name. It is built once per config, with its policies, when the
// config is parsed (and so on every reload); handlers, the policy and the
// runtime look roles and backends up here, never by searching the config's
// slices. The runtime adds the last link, backend → open plugin.
type catalog struct {
	cfg      *Config
	roles    map[string]*RoleConfig
	backends map[string]*BackendConfig
}

// compileCatalog indexes c's roles and backends; c must be valid, so every
// role's backend exists and has its driver.
func compileCatalog(c *Config) *catalog {
	cat := &catalog{
		cfg:      c,
		roles:    make(map[string]*RoleConfig, len(c.Roles)),
		backends: make(map[string]*BackendConfig, len(c.Backends)),
	}
	for i := range c.Backends {
		cat.backends[c.Backends[i].Name] = &c.Backends[i]
	}
	for i := range c.Roles {
		cat.roles[c.Roles[i].Name] = &c.Roles[i]
	}
	return cat
}

// role returns the role named name.
func (cat *catalog) role(name string) (*RoleConfig, bool) {
	r, ok := cat.roles[name]
	return r, ok
}

// backend returns the backend named name, nil when there is none.
func (cat *catalog) backend(name string) *BackendConfig {
	return cat.backends[name]
}

// roleSpec returns the current spec of the role called role if it is still
// configured on backend, else nil: a lease's role that was removed, or now
// names another backend (whose plugin could not read the spec), is renewed
// and revoked from the lease's state alone.
func (cat *catalog) roleSpec(backend, role string) any {
	r, ok := cat.roles[role]
	if !ok || r.Backend != backend {
		return nil
	}
	return r.spec
}
