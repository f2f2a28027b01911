# Sourced by the gateway benchmarks: nginx as the reference proxy (proxy_pass, keep-alive to the
# upstream, buffering off, no access log), its configuration written under WORK_DIR/nginx.
#
# usage: nginx_write_config WORK_DIR UPSTREAM_PORT LISTEN_PORT WORKERS
#        then: nginx -c "$WORK_DIR/nginx/nginx.conf" &
nginx_write_config() {
  local work=$1 upstream=$2 listen=$3 workers=$4
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes $workers;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream prom { server 127.0.0.1:$upstream; keepalive 32; }
  server {
    listen 127.0.0.1:$listen;
    location / {
      proxy_pass http://prom; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
}
