// Package config loads, defaults and validates exposure's YAML
// configuration.
//
// Decoding is strict and reports every problem of a file at once, each as
// an *Error naming the file, the line, the field path and the bad value:
//
//	exposure.yml:14: targets[2].ports: "80-70": range end before start
//	exposure.yml:5: targets[0].portz: unknown field
//	exposure.yml:6: targets[0].ports: duplicate field (first set at line 4)
//
// To get the lines, the file is parsed into a yaml.Node tree and decoded
// by this package's own walker (unknown and duplicate keys, type
// mismatches), then validated; values that failed to decode are not
// validated again. Load does no other I/O: files the configuration names
// (secrets, probe files) are read by the packages that use them, so
// reloading is cheap and the configuration never holds a secret. The
// resolved configuration (String) can be printed and parsed back.
//
// # Reference
//
// Durations use Prometheus syntax: 30s, 15m, 1h30m, 90d, 1w. Every field
// is optional unless marked required; the value after "=" is the default.
//
//	global:
//	  scan_rate: 20000            # packets per second shared by all scans, >= 1
//	  retention: 90d              # how long snapshots and changes are kept, > 0
//	  jitter: 30s                 # bound of a fixed per-target offset (a hash of the name,
//	                              # at most 95% of the schedule's interval) added to every
//	                              # run: targets spread, each keeps its period
//	  max_concurrent_scans: 4     # targets scanned at the same time, >= 1
//	  run_at_start: false         # scan every target once at start-up
//	  series_budget: 10000        # max per-port series per scrape (exposure_port_open,
//	                              # exposure_service_info); 0 exports none
//	  shard: {index: 0, total: 1} # this daemon scans the targets whose name hashes
//	                              # (md5, as Prometheus' hashmod) to index mod total
//	  all_open_share: 0.9         # share of scanned ports open on one host that is
//	                              # reported as one all_ports_open change, (0, 1]
//	  confirm: {n: 2, m: 3}       # a port change is reported when n of up to m re-probe
//	                              # rounds agree (diff.Confirm); m: 0 turns confirmation
//	                              # off; 1 <= n <= m <= 10
//	  flap: {window: 1h, threshold: 4}  # a port whose state changes threshold (>= 2) times
//	                              # within window is reported that time with the count,
//	                              # then held until it keeps one state for a whole window
//	  interface: ""               # bind every scan socket (probes, -sV, DNS) to this
//	                              # interface, as nmap -e; a target it does not route
//	                              # to is filtered "not probed: no route via NAME";
//	                              # "" binds nothing; missing at scan time: scan fails
//	defaults:                     # every target inherits these, field by field
//	  ports: top:1000             # "22,80", "1-1024", "-" (all), "top:N" (N <= 1000), combined;
//	                              # UDP as nmap writes it: "T:22,80,U:53,161", "udp-top:N"
//	                              # (N <= 1000); bare numbers and top:N are TCP. UDP needs
//	                              # raw sockets: not with engine connect
//	  schedule: "@every 15m"      # 5-field cron, CRON_TZ=Zone prefix, @hourly, @every 10m;
//	                              # local time unless CRON_TZ is given
//	  timeout: 10m                # one whole scan; a scan cut short is stored incomplete
//	  retries: 2                  # retransmissions of an unanswered probe, 0-10
//	  engine: auto                # syn (needs CAP_NET_RAW), connect, or auto
//	  reverse_dns: true           # look up PTR names of hosts found up
//	  service_detection:
//	    enabled: true
//	    intensity: 7              # 0-9, as nmap --version-intensity
//	    timeout: 5s               # per port
//	    refresh: 24h              # an open port whose banner/certificate is unchanged keeps its
//	                              # service up to this long; 0: full detection every scan
//	    probe_files: []           # extra nmap-service-probes files
//	targets:                      # required, at least one
//	  - name: dmz                 # required, unique; letters, digits, . _ -; max 64
//	    hosts: [198.18.0.0/28, "198.18.1.1-20", "2001:2::/120", mail.example.test]  # required
//	    exclude: [198.18.0.5]     # removed after resolution, same syntax
//	    allow_large: false        # needed for more than 65,536 addresses
//	    ports: "1-65535,U:53,161" # any field of defaults may be overridden here;
//	    schedule: "*/30 * * * *"  #   service_detection field by field
//	    labels: {env: prod}       # added to alerts; valid Prometheus label names,
//	                              # not alertname, target, address, port, protocol,
//	                              # severity, service, product, version, kind,
//	                              # instance, job, nor __*; values not empty
//	    expect:
//	      open: [22, 80, 443]     # anything else open: unexpected_open;
//	                              # "open: []" means nothing may be open
//	      never_open: [23, 3389, U:161]  # open: forbidden_open (critical)
//	      versions: {22: ">= 9.0", 80: ">= 2.4, < 3"}  # terms OP VERSION, OP one of >= > <= < = == !=;
//	                              # broken: version_policy
//	                              # (ports in expect must be within the target's ports;
//	                              # each is one protocol's: 22 or T:22 is TCP, U:161 or
//	                              # 161/udp is UDP; only "open" is open, never a UDP
//	                              # port's open|filtered)
//	    receivers: [am]           # only these receivers get this target's alerts
//	                              # (default: every receiver whose route matches)
//	receivers:
//	  - name: am                  # required, unique
//	    alertmanager:             # exactly one of alertmanager, webhook, log
//	      url: http://127.0.0.1:9093      # or urls: [...] for an HA cluster (all are sent to)
//	      basic_auth: {username: exposure, password_file: /etc/exposure/am.password}
//	      bearer_token_file: /etc/exposure/am.token  # not together with basic_auth
//	      timeout: 10s
//	    route:                    # empty lists match everything
//	      targets: [dmz]          # names of targets
//	      kinds: [forbidden_open] # change kinds (snapshot.Kinds), scan_failing included
//	      min_severity: info      # info, warning or critical
//	    event_lifetime: 1h        # endsAt of event alerts (port opened, version changed)
//	  - name: hook
//	    webhook:
//	      url: https://hooks.example.test/x   # http or https, no credentials in URLs
//	      secret_file: /etc/exposure/hook.secret  # HMAC-SHA256 key; unsigned without it
//	      timeout: 10s
//	  - name: log
//	    log: {}
//
// Without a configuration file the daemon runs Default(), the embedded
// default.yml: target "localhost", 127.0.0.1, top:1000 every 15 minutes,
// scanned once at start-up, alerts to the log.
package config
