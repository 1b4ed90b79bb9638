#!/usr/bin/env python3
# image-http-server.py: a loopback HTTP server for the image tests: serves
# files of a directory with byte ranges, logs every request (one JSON line
# each: path, range header), and misbehaves on purpose under two prefixes:
#   /cut/NAME      the first GET of NAME sends half the body, then hangs up
#   /norange/NAME  like /cut/, and ignores Range headers (always 200, whole file)
# Prints "port N" on stdout once listening on 127.0.0.1; stops on SIGTERM.
import http.server
import json
import os
import signal
import sys
import threading

root = sys.argv[1]
log_path = sys.argv[2]
served_cut = set()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        mode = "plain"
        for prefix in ("/cut/", "/norange/"):
            if path.startswith(prefix):
                mode = prefix.strip("/")
                path = "/" + path[len(prefix):]
        with lock:
            with open(log_path, "a") as log:
                log.write(json.dumps({"path": self.path, "range": self.headers.get("Range")}) + "\n")
        name = os.path.basename(path)
        file_path = os.path.join(root, name)
        if not name or not os.path.isfile(file_path):
            self.send_error(404)
            return
        with open(file_path, "rb") as f:
            data = f.read()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and mode != "norange" and wanted.startswith("bytes="):
            first = wanted[6:].split("-", 1)[0]
            start = int(first) if first else 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
            self.send_header("Accept-Ranges", "bytes" if mode != "norange" else "none")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        first_time = False
        with lock:
            if mode != "plain" and name not in served_cut:
                served_cut.add(name)
                first_time = True
        if first_time:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print("port %d" % server.server_address[1], flush=True)
server.serve_forever()
