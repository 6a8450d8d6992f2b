package lab

// Interface is the name of the lab's bridge: the network interface every
// scan of the lab binds to (exposure scan -e, global.interface,
// scanner.EngineOptions.Interface), so that nothing it sends can leave
// through another interface, not even after the lab is torn down.
func (l *Lab) Interface() string { return l.bridge }
