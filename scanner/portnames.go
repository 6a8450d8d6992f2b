package scanner

// wellKnown names the services usually found on common TCP ports, as
// nmap-services does; it labels ports when service detection is off.
var wellKnown = map[uint16]string{
	7: "echo", 9: "discard", 13: "daytime", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp",
	37: "time", 43: "whois", 53: "domain", 70: "gopher", 79: "finger", 80: "http", 88: "kerberos-sec",
	106: "pop3pw", 110: "pop3", 111: "rpcbind", 113: "ident", 119: "nntp", 123: "ntp", 135: "msrpc",
	139: "netbios-ssn", 143: "imap", 161: "snmp", 179: "bgp", 199: "smux", 389: "ldap", 427: "svrloc",
	443: "https", 444: "snpp", 445: "microsoft-ds", 465: "smtps", 513: "login", 514: "shell",
	515: "printer", 543: "klogin", 544: "kshell", 548: "afp", 554: "rtsp", 587: "submission",
	631: "ipp", 636: "ldapssl", 646: "ldp", 873: "rsync", 853: "domain-s", 990: "ftps", 993: "imaps",
	995: "pop3s", 1025: "NFS-or-IIS", 1080: "socks", 1433: "ms-sql-s", 1521: "oracle", 1723: "pptp",
	1883: "mqtt", 2049: "nfs", 2121: "ccproxy-ftp", 2375: "docker", 2376: "docker", 3000: "ppp",
	3128: "squid-http", 3268: "globalcatLDAP", 3306: "mysql", 3389: "ms-wbt-server", 4190: "sieve",
	5000: "upnp", 5060: "sip", 5432: "postgresql", 5672: "amqp", 5900: "vnc", 5984: "couchdb",
	6000: "X11", 6379: "redis", 6443: "sun-sr-https", 6667: "irc", 8000: "http-alt", 8008: "http",
	8080: "http-proxy", 8081: "blackice-icecap", 8443: "https-alt", 8883: "secure-mqtt",
	8888: "sun-answerbook", 9000: "cslistener", 9090: "zeus-admin", 9093: "copycat", 9100: "jetdirect",
	9200: "wap-wsp", 9418: "git", 10000: "snet-sensor-mgmt", 11211: "memcache",
	27017: "mongod",
}

// PortName is the conventional service name of a TCP port, "unknown" when
// there is none.
func PortName(port uint16) string {
	if n, ok := wellKnown[port]; ok {
		return n
	}
	return "unknown"
}
