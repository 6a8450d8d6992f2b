package service

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/textsafe"
)

// TestProtocolReplies runs the embedded probes' patterns against replies
// built from the protocol specifications for the services the lab has no
// daemon for.
func TestProtocolReplies(t *testing.T) {
	d, err := New(Options{Intensity: DefaultIntensity})
	require.NoError(t, err)
	mongoDoc := "\x02version\x00\x06\x00\x00\x004.4.6\x00\x01ok\x00\x00\x00\x00\x00\x00\x00\xf0\x3f"
	tests := []struct {
		probe, reply                    string
		service, product, version, info string
	}{
		{"NULL", "SSH-2.0-OpenSSH_9.6\r\n", "ssh", "OpenSSH", "9.6", "protocol 2.0"},
		{"NULL", "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n", "ssh", "OpenSSH", "8.9p1 Ubuntu 3ubuntu0.6", "protocol 2.0"},
		{"NULL", "SSH-2.0-dropbear_2022.83\r\n", "ssh", "Dropbear sshd", "2022.83", "protocol 2.0"},
		{"NULL", "220 (vsFTPd 3.0.3)\r\n", "ftp", "vsftpd", "3.0.3", ""},
		{"NULL", "220 mx.example.test ESMTP Postfix (Debian/GNU)\r\n", "smtp", "Postfix smtpd", "", ""},
		{"NULL", "+OK Dovecot ready.\r\n", "pop3", "Dovecot pop3d", "", ""},
		{"NULL", "J\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00abcdefgh\x00\xff\xf7", "mysql", "MySQL", "8.0.36", ""},
		{"NULL", "[\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x05\x00\x00\x00", "mysql", "MariaDB", "10.11.6", "-0+deb12u1"},
		{"NULL", "RFB 003.008\n", "vnc", "VNC", "", "protocol 3.8"},
		{"NULL", "@RSYNCD: 31.0\n", "rsync", "rsync", "", "protocol version 31"},
		{"NULL", "\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23", "telnet", "", "", ""},
		{"NULL", `INFO {"server_id":"NABC","server_name":"n1","version":"2.10.4","proto":1}` + "\r\n", "nats", "NATS server", "2.10.4", ""},
		{"GetRequest", "HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 08:00:00 GMT\r\nServer: Apache/2.4.57 (Debian)\r\nContent-Type: text/html\r\n\r\n<html>", "http", "Apache httpd", "2.4.57", "(Debian)"},
		{"GetRequest", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nServer: Microsoft-IIS/10.0\r\n\r\n<title>IIS Windows Server</title>", "http", "Microsoft IIS httpd", "10.0", "IIS Windows Server"},
		{"GetRequest", "HTTP/1.1 400 Bad Request\r\nServer: squid/5.7\r\nMime-Version: 1.0\r\n\r\n", "http-proxy", "Squid http proxy", "5.7", ""},
		{"GetRequest", "HTTP/1.1 200 OK\r\nServer: lighttpd/1.4.69\r\n\r\n", "http", "lighttpd", "1.4.69", ""},
		{"GetRequest", "HTTP/1.1 200 OK\r\nServer: Caddy\r\n\r\n<title>Caddy works!</title>", "http", "Caddy httpd", "", "Caddy works!"},
		{"GetRequest", "HTTP/1.1 200 OK\r\nServer: Frobnicator/3.1-beta\r\n\r\n", "http", "Frobnicator", "3.1-beta", ""},
		{"GetRequest", "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: 300\r\n\r\n{\n  \"name\" : \"node-1\",\n  \"cluster_name\" : \"elasticsearch\",\n  \"version\" : {\n    \"number\" : \"7.17.9\",\n    \"build_flavor\" : \"default\",\n    \"lucene_version\" : \"8.11.1\"\n  },\n  \"tagline\" : \"You Know, for Search\"\n}\n", "http", "Elasticsearch REST API", "7.17.9", ""},
		{"RedisInfo", "-NOAUTH Authentication required.\r\n", "redis", "Redis key-value store", "", "authentication required"},
		{"MemcachedVersion", "VERSION 1.6.21\r\n", "memcached", "Memcached", "1.6.21", ""},
		{"PostgresStartup", "E\x00\x00\x00\x8bSFATAL\x00VFATAL\x00C0A000\x00Munsupported frontend protocol 0.0: server supports 2.0 to 3.0\x00Fpostmaster.c\x00L2089\x00RProcessStartupPacket\x00\x00", "postgresql", "PostgreSQL DB", "9.6.0 - 13", ""},
		{"MongoBuildInfo", "\x50\x00\x00\x00\x07\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00" + strings.Repeat("\x00", 20) + "\x2c\x00\x00\x00" + mongoDoc, "mongodb", "MongoDB", "4.4.6", ""},
		{"ZooKeeperSrvr", "Zookeeper version: 3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f, built on 2022-02-25 08:49 UTC\nLatency min/avg/max: 0/0.0/0\n", "zookeeper", "Apache ZooKeeper", "3.8.0", ""},
		{"DNSVersionBindTCP", "\x00\x3e\x00\x06\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03\xc0\x0c\x00\x10\x00\x03\x00\x00\x00\x00\x00\x0d\x0cdnsmasq-2.89", "domain", "dnsmasq", "2.89", ""},
		{"DNSVersionBindTCP", "\x00\x1e\x00\x06\x84\x05\x00\x01\x00\x00\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03", "domain", "", "", ""},
		{"MQTTConnect", "\x20\x02\x00\x05", "mqtt", "", "", "not authorized"},
		{"AMQPHeader", "\x01\x00\x00\x00\x00\x01\x90\x00\x0a\x00\x0a\x00\x09\x00\x00\x01\x80\x07productS\x00\x00\x00\x08RabbitMQ\x07versionS\x00\x00\x00\x063.12.1\xce", "amqp", "RabbitMQ", "3.12.1", "AMQP 0-9"},
		{"RDPXrdpCheck", "\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x01\x08\x00\x01\x00\x00\x00\x03\x00\x00\x09\x02\xf0\x80\x21\x80", "ms-wbt-server", "xrdp", "", "RDP negotiation: protocol 1"},
		{"SMBNegotiate", "\x00\x00\x00\xf8\xfeSMB\x40\x00\x00\x00\x00\x00\x00\x00", "microsoft-ds", "", "", "SMB 2+"},
		{"Socks5", "\x05\x00", "socks5", "", "", "no authentication"},
		// Samba 4.17 (lab): the ServerGuid is its NetBIOS name; the NTLMSSP challenge names the workgroup.
		{"SMB2Negotiate", "\x00\x00\x00\xca\xfeSMB@\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xfe\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00A\x00\x01\x00\x02\x03\x00\x00h2\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00O\x00\x00\x00\x00\x00\x80\x00\x00\x00\x80\x00\x00\x00\x80\x00\x06\xcdd_\x1f\x83\xdd\x01\x00\x00\x00\x00\x00\x00\x00\x00\x80\x00J\x00\x00\x00\x00\x00`H\x06\x06+\x06\x01\x05\x05\x02\xa0>0<\xa0\x0e0\x0c\x06\x0a+\x06\x01\x04\x01\x827\x02\x02\x0a\xa3*0(\xa0&\x1b$not_defined_in_RFC4178@please_ignore\x00\x00\x00\xb0\xfeSMB@\x00\x00\x00\x16\x00\x00\xc0\x01\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc7\xbcL{\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00H\x00h\x00NTLMSSP\x00\x02\x00\x00\x00\x04\x00\x04\x008\x00\x00\x00\x05\x82\x8a\xe2\xf4\x17\x9b\xd8\xc77\xa5\xa2\x00\x00\x00\x00\x00\x00\x00\x00,\x00,\x00<\x00\x00\x00\x06\x01\x00\x00\x00\x00\x00\x0fH\x002\x00\x02\x00\x04\x00H\x002\x00\x01\x00\x04\x00H\x002\x00\x04\x00\x00\x00\x03\x00\x04\x00v\x00m\x00\x07\x00\x08\x00X>e_\x1f\x83\xdd\x01\x00\x00\x00\x00", "netbios-ssn", "Samba smbd", "", "SMB 3.0.2; workgroup: H2"},
		// The same with a random ServerGuid and a Windows Server 2019 build in the challenge.
		{"SMB2Negotiate", "\x00\x00\x00\xca\xfeSMB@\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xfe\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00A\x00\x01\x00\x02\x03\x00\x00\x8f\x1a,=N_`q\x82\x93\xa4\xb5\xc6\xd7\xe8\xf9O\x00\x00\x00\x00\x00\x80\x00\x00\x00\x80\x00\x00\x00\x80\x00\x06\xcdd_\x1f\x83\xdd\x01\x00\x00\x00\x00\x00\x00\x00\x00\x80\x00J\x00\x00\x00\x00\x00`H\x06\x06+\x06\x01\x05\x05\x02\xa0>0<\xa0\x0e0\x0c\x06\x0a+\x06\x01\x04\x01\x827\x02\x02\x0a\xa3*0(\xa0&\x1b$not_defined_in_RFC4178@please_ignore\x00\x00\x00\xb0\xfeSMB@\x00\x00\x00\x16\x00\x00\xc0\x01\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc7\xbcL{\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00H\x00h\x00NTLMSSP\x00\x02\x00\x00\x00\x04\x00\x04\x008\x00\x00\x00\x05\x82\x8a\xe2\xf4\x17\x9b\xd8\xc77\xa5\xa2\x00\x00\x00\x00\x00\x00\x00\x00,\x00,\x00<\x00\x00\x00\x0a\x00cE\x00\x00\x00\x0fH\x002\x00\x02\x00\x04\x00H\x002\x00\x01\x00\x04\x00H\x002\x00\x04\x00\x00\x00\x03\x00\x04\x00v\x00m\x00\x07\x00\x08\x00X>e_\x1f\x83\xdd\x01\x00\x00\x00\x00", "microsoft-ds", "", "", "NTLM: Windows 10.0 build 17763; domain: H2"},
	}
	for _, tt := range tests {
		t.Run(tt.probe+"/"+tt.service+"/"+tt.product, func(t *testing.T) {
			p := d.DB().Probe("TCP", tt.probe)
			require.NotNil(t, p)
			f, hard, _ := d.match(p, []byte(tt.reply))
			require.True(t, hard, "no hard match")
			require.Equal(t, tt.service, f.Service)
			require.Equal(t, tt.product, f.Product)
			require.Equal(t, tt.version, f.Version)
			require.Equal(t, tt.info, textsafe.Clean(f.Info, maxInfoLen))
		})
	}
}
