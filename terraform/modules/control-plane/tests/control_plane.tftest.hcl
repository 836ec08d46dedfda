# terraform test (apply): what the control-plane module renders.

variables {
  etcd_members = { etcd1 = "10.0.0.11", etcd2 = "10.0.0.12", etcd3 = "10.0.0.13" }
  controllers = {
    c1 = { ip = "10.0.0.21", url = "https://api1.example.org" }
    c2 = { ip = "10.0.0.22", url = "https://api2.example.org/" }
  }
  tenant = "acme"
  tls = {
    ca_pem             = "CA"
    etcd_member_pem    = { etcd1 = "M1", etcd2 = "M2", etcd3 = "M3" }
    etcd_client_pem    = "CLIENT"
    controller_api_pem = { c1 = "API1", c2 = "API2" }
  }
  tls_keys = {
    etcd_member    = { etcd1 = "K1", etcd2 = "K2", etcd3 = "K3" }
    etcd_client    = "CK"
    controller_api = { c1 = "AK1", c2 = "AK2" }
  }
  ssh_cidrs = ["192.0.2.0/24"]
}

run "renders_the_cluster_and_the_controllers" {
  command = apply

  assert {
    condition = alltrue([for n, env in output.etcd_environment :
      strcontains(env, "ETCD_INITIAL_CLUSTER=etcd1=https://10.0.0.11:2380,etcd2=https://10.0.0.12:2380,etcd3=https://10.0.0.13:2380\n")
      && strcontains(env, "ETCD_NAME=${n}\n") && strcontains(env, "ETCD_CLIENT_CERT_AUTH=true\n") && strcontains(env, "ETCD_PEER_CLIENT_CERT_AUTH=true\n")
    ])
    error_message = "every member knows the whole cluster and requires client certificates from clients and peers"
  }
  assert {
    condition = alltrue([for n, t in output.controller_toml :
    strcontains(t, "etcd_endpoints = [\"https://10.0.0.11:2379\",\"https://10.0.0.12:2379\",\"https://10.0.0.13:2379\"]\n") && strcontains(t, "etcd_ca = ")])
    error_message = "controllers reach every member over TLS"
  }
  assert {
    condition     = strcontains(output.controller_toml.c2, "advertise_url = \"https://api2.example.org\"\n") && output.controller_urls == tolist(["https://api1.example.org", "https://api2.example.org"])
    error_message = "each replica advertises its own URL"
  }
  assert {
    condition     = alltrue([for k, v in output.keys : can(regex("^nxk_[0-9a-f]{64}$", v))]) && length(toset(values(output.keys))) == 3
    error_message = "three distinct API keys"
  }
  assert {
    condition     = alltrue([for n, t in output.controller_toml : strcontains(t, "admin_key = \"${output.keys.admin_key}\"") && strcontains(t, "tenant = \"acme\"")])
    error_message = "every replica has the same keys"
  }
  assert {
    condition = alltrue([for n, ud in output.etcd_user_data :
    one([for f in yamldecode(ud).write_files : f.permissions if f.path == "/etc/etcd/tls/${n}.key"]) == "0600"])
    error_message = "member keys are private"
  }
  assert {
    condition     = strcontains(yamldecode(output.etcd_user_data.etcd1).write_files[5].content, "ip saddr { 10.0.0.21, 10.0.0.22, 10.0.0.11, 10.0.0.12, 10.0.0.13 } tcp dport 2379 accept")
    error_message = "etcd's client port is open to the control plane only"
  }
}

run "keys_survive_a_later_apply" {
  command = apply
  variables {
    tenant = null
  }
  assert {
    condition     = output.keys == run.renders_the_cluster_and_the_controllers.keys
    error_message = "the keys are made once"
  }
  assert {
    condition     = !strcontains(output.controller_toml.c1, "tenant")
    error_message = "no tenant without one"
  }
}

run "refuses_an_even_cluster" {
  command = plan
  variables {
    etcd_members = { etcd1 = "10.0.0.11", etcd2 = "10.0.0.12", etcd3 = "10.0.0.13", etcd4 = "10.0.0.14" }
  }
  expect_failures = [var.etcd_members]
}

run "refuses_a_plain_http_controller_url" {
  command = plan
  variables {
    controllers = { c1 = { ip = "10.0.0.21", url = "http://api1.example.org" } }
  }
  expect_failures = [var.controllers]
}
