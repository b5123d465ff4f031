package auth

// OIDCEnabled reports whether people can sign in with an OpenID provider
// (not yet).
func (a *Auth) OIDCEnabled() bool { return false }

// OIDCName is how the sign-in button names the provider.
func (a *Auth) OIDCName() string { return "" }

// LocalLoginOff reports whether password sign-in is off (but for the
// break-glass account).
func (a *Auth) LocalLoginOff() bool { return a.opts.LocalLoginOff }
