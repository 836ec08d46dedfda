// NexRTC Edge client latency probe for browsers (served by every controller at
// /nexrtc-probe.js; no dependencies, no build step).
//
//   <script src="https://controller.example.net/nexrtc-probe.js"></script>
//   const r = await nexrtcProbe({ baseUrl: "https://controller.example.net", token });
//   // r = { network, results: [{region, rtt_ms}], answer: {network, accepted, home} }
//
// `token` is what POST /v1/ice-servers takes from a browser: a client token (nxt_…).
// The probe asks the controller for one relay's STUN URL per region
// (POST /v1/client-probes/targets), times STUN with an RTCPeerConnection per relay (from
// setLocalDescription to the server-reflexive candidate: one STUN Binding round trip plus
// the browser's gathering start-up, a few ms that every region pays alike), keeps each
// region's fastest of `rounds`, and reports them (POST /v1/client-probes). From then on
// the controller ranks this client's network by them. Regions that did not answer within
// `timeoutMs` are left out.
(function (global) {
  "use strict";

  async function srflxTime(url, timeoutMs) {
    const pc = new RTCPeerConnection({ iceServers: [{ urls: url }] });
    try {
      pc.createDataChannel("probe");
      let start = 0;
      const answered = new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), timeoutMs);
        pc.onicecandidate = (e) => {
          if (e.candidate && e.candidate.type === "srflx") {
            clearTimeout(timer);
            resolve(performance.now() - start);
          } else if (!e.candidate) {
            clearTimeout(timer);
            resolve(null);
          }
        };
      });
      const offer = await pc.createOffer();
      start = performance.now();
      await pc.setLocalDescription(offer);
      return await answered;
    } finally {
      pc.close();
    }
  }

  async function call(baseUrl, path, token, body) {
    const response = await fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(`${path}: ${answer.code || response.status}: ${answer.message || ""}`);
      error.code = answer.code;
      throw error;
    }
    return answer;
  }

  async function nexrtcProbe(options) {
    const { baseUrl = "", token, rounds = 3, timeoutMs = 3000, report = true } = options || {};
    if (!token) throw new Error("nexrtcProbe: a client token is required");
    const { targets, network } = await call(baseUrl, "/v1/client-probes/targets", token, {});
    const best = new Map();
    for (let round = 0; round < Math.max(1, rounds); round++) {
      const times = await Promise.all(targets.map((t) => srflxTime(t.url, timeoutMs)));
      times.forEach((ms, i) => {
        const region = targets[i].region;
        if (ms !== null && !(best.get(region) <= ms)) best.set(region, ms);
      });
    }
    const results = [...best].map(([region, ms]) => ({ region, rtt_ms: Math.max(ms, 0.001) }));
    let answer = null;
    if (report && results.length) {
      answer = await call(baseUrl, "/v1/client-probes", token, { results });
    }
    return { network: answer ? answer.network : network, results, answer };
  }

  global.nexrtcProbe = nexrtcProbe;
})(typeof window !== "undefined" ? window : globalThis);
