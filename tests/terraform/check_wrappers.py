#!/usr/bin/env python3
"""The cloud wrappers (terraform/aws, terraform/hcloud) need their providers to
validate, which cannot be downloaded everywhere the tests run. Parse them with
python-hcl2 instead and check what matters: the instances' user data is the region
module's output unchanged, and the firewall opens exactly the region module's rules
(no other ingress). Usage: check_wrappers.py TERRAFORM_DIR; exit 0 or a list of
findings and exit 1."""

import sys
from pathlib import Path

import hcl2

root = Path(sys.argv[1])
findings = []


def load(directory):
    """Every block of every .tf file of a directory, merged by kind."""
    merged = {}
    for path in sorted(directory.glob("*.tf")):
        with open(path) as f:
            for kind, blocks in hcl2.load(f).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def label(s):
    return s.strip('"')


def resources(doc, rtype):
    """name -> body of every resource of a type."""
    out = {}
    for block in doc.get("resource", []):
        for t, named in block.items():
            if label(t) == rtype:
                for name, body in named.items():
                    out[label(name)] = body
    return out


def modules(doc):
    out = {}
    for block in doc.get("module", []):
        for name, body in block.items():
            out[label(name)] = body
    return out


def check(cond, message):
    if not cond:
        findings.append(message)


def dynamic_blocks(body, kind):
    return [b[f'"{kind}"'] for b in body.get("dynamic", []) if f'"{kind}"' in b]


def check_region_module(doc, wrapper, address_discovery):
    mods = modules(doc)
    region = mods.get("region")
    check(region is not None, f"{wrapper}: calls the region module as module.region")
    if region is None:
        return
    check(region.get("source") == '"../modules/region"', f"{wrapper}: module.region's source is ../modules/region")
    check(region.get("for_each") == "${var.regions}", f"{wrapper}: one region module per entry of var.regions")
    check(region.get("address_discovery") == f'"{address_discovery}"', f"{wrapper}: address_discovery {address_discovery}")
    reg = mods.get("registration")
    check(reg is not None and reg.get("registration") == "${module.region[each.key].registration}",
          f"{wrapper}: registers each region with the region module's registration output")


def check_aws():
    doc = load(root / "aws")
    check_region_module(doc, "aws", "aws")
    lts = resources(doc, "aws_launch_template")
    lt = lts.get("relay", {})
    check(lt.get("user_data") == "${base64encode(module.region[each.key].autoscaling_user_data)}",
          f"aws: the launch template's user data is the region module's autoscaling_user_data (base64, as EC2 takes it): {lt.get('user_data')}")
    sgs = resources(doc, "aws_security_group")
    check(list(sgs) == ["relay"], f"aws: one security group resource, relay: {list(sgs)}")
    sg = sgs.get("relay", {})
    check("ingress" not in sg, "aws: no static ingress block (only the region module's rules)")
    ingress = dynamic_blocks(sg, "ingress")
    check(len(ingress) == 1, "aws: exactly one dynamic ingress block")
    for block in ingress:
        check(block.get("for_each") == "${module.region[each.key].firewall}", "aws: ingress iterates the region module's firewall")
        content = block["content"][0]
        for key in ["protocol", "from_port", "to_port"]:
            check(content.get(key) == f"${{ingress.value.{key}}}", f"aws: ingress {key} is the rule's own")
        check("ingress.value.cidrs" in content.get("cidr_blocks", "") and "ingress.value.cidrs" in content.get("ipv6_cidr_blocks", ""),
              "aws: ingress sources are the rule's cidrs")
    check(not resources(doc, "aws_security_group_rule") and not resources(doc, "aws_vpc_security_group_ingress_rule"),
          "aws: no separate ingress rule resources")
    asg = resources(doc, "aws_autoscaling_group").get("relay", {})
    check(asg.get("min_size") == "${each.value.min_nodes}" and asg.get("max_size") == "${each.value.max_nodes}",
          "aws: the group's size comes from the regions map")
    check(asg.get("vpc_zone_identifier") == "${each.value.subnet_ids}", "aws: the group spans the region's subnets")
    hooks = asg.get("initial_lifecycle_hook", [])
    check(len(hooks) == 1 and hooks[0].get("lifecycle_transition") == '"autoscaling:EC2_INSTANCE_TERMINATING"',
          "aws: a termination lifecycle hook")
    if hooks:
        check(hooks[0].get("heartbeat_timeout") == "${var.drain_grace + 90}",
              "aws: the hook waits longer than the drain grace")
        check(hooks[0].get("name") == "${local.hook}", "aws: the hook is the one the nodes complete")
    check("aws_lifecycle_hook" in modules(doc).get("region", {}), "aws: the nodes watch the lifecycle hook")
    # Load-based scaling reads what the nodes publish (files/load-metric.sh).
    script = (root / "modules/region/files/load-metric.sh").read_text()
    policy = resources(doc, "aws_autoscaling_policy").get("allocations", {})
    spec = policy.get("target_tracking_configuration", [{}])[0].get("customized_metric_specification", [{}])[0]
    check(spec.get("namespace") == '"NexRTC"' and "--namespace NexRTC" in script,
          "aws: the allocations policy reads the namespace the nodes publish to")
    check(spec.get("metric_name") == '"RelayAllocations"' and "--metric-name RelayAllocations" in script,
          "aws: the allocations policy reads the metric the nodes publish")
    dims = spec.get("metric_dimension", [{}])[0]
    check(dims.get("name") == '"AutoScalingGroupName"' and "AutoScalingGroupName=$group" in script,
          "aws: the metric's dimension is the group, as published")


def check_hcloud():
    doc = load(root / "hcloud")
    check_region_module(doc, "hcloud", "hcloud")
    server = resources(doc, "hcloud_server").get("relay", {})
    check(server.get("user_data") == "${module.region[each.value.region].nodes[each.value.node].user_data}",
          f"hcloud: the server's user data is the region module's node user data: {server.get('user_data')}")
    check(server.get("shutdown_before_deletion") is True, "hcloud: servers shut down (and drain) before deletion")
    fws = resources(doc, "hcloud_firewall")
    check(list(fws) == ["relay"], f"hcloud: one firewall resource, relay: {list(fws)}")
    fw = fws.get("relay", {})
    check("rule" not in fw, "hcloud: no static rule block (only the region module's rules)")
    rules = dynamic_blocks(fw, "rule")
    check(len(rules) == 1, "hcloud: exactly one dynamic rule block")
    for block in rules:
        check(block.get("for_each") == "${module.region[each.key].firewall}", "hcloud: rules iterate the region module's firewall")
        content = block["content"][0]
        check(content.get("direction") == '"in"', "hcloud: rules are inbound")
        check(content.get("protocol") == "${rule.value.protocol}", "hcloud: the rule's protocol")
        check(content.get("source_ips") == "${rule.value.cidrs}", "hcloud: the rule's sources")
        check("rule.value.from_port" in content.get("port", "") and "rule.value.to_port" in content.get("port", ""),
              "hcloud: the rule's ports")
    pg = resources(doc, "hcloud_placement_group").get("relay", {})
    check(pg.get("type") == '"spread"', "hcloud: a spread placement group per region")


check_aws()
check_hcloud()
if findings:
    print("\n".join(f"- {f}" for f in findings if f))
    sys.exit(1)
print("cloud wrappers: user data passed through, firewalls exactly the region module's rules")
