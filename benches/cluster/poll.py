# 1000 plain-HTTP GETs of /v1/nodes on the local daemon (run inside its namespace).
import socket, sys
for _ in range(int(sys.argv[1])):
    s = socket.create_connection(("::1", 3200), timeout=5)
    s.sendall(b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
