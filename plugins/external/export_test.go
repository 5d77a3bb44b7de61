package external

// PID is the process id of the running instance; 0 while it is down.
func (p *Plugin) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.exited() {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// ValidatorPID is the process id of the validation instance; 0 when none
// runs.
func (d *Driver) ValidatorPID() int {
	d.valMu.Lock()
	defer d.valMu.Unlock()
	if d.val == nil || d.val.exited() {
		return 0
	}
	return d.val.cmd.Process.Pid
}

// ConnectHTTP1 reports whether calls to the running instance go with the
// Connect protocol over HTTP/1.1 (else gRPC over HTTP/2).
func (p *Plugin) ConnectHTTP1() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur != nil && p.cur.hs.connectHTTP1
}
