// Review actions: the page sends the Dagster UI's own launchRun to /graphql (the proxy decides
// and tags it), with the session token and this action's single-use nonce, then shows the run.
(function () {
  "use strict";
  var configNode = document.getElementById("review-config");
  if (!configNode) { return; }
  var config = JSON.parse(configNode.textContent);
  var token = document.querySelector('meta[name="b2cal-csrf"]').content;
  var result = document.getElementById("action-result");

  function show(lines, failed) {
    if (!result) { return; }
    result.className = failed ? "refused" : "launched";
    result.textContent = "";
    lines.forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;  // text, never markup
      result.appendChild(p);
    });
  }

  function messages(body) {
    var out = [];
    if (body && body.errors) { body.errors.forEach(function (e) { out.push(e.message); }); }
    if (body && body.error && out.indexOf(body.error) < 0) { out.push(body.error); }
    var launch = body && body.data && body.data.launchRun;
    if (launch && launch.__typename !== "LaunchRunSuccess") {
      if (launch.message) { out.push(launch.__typename + ": " + launch.message); }
      (launch.errors || []).forEach(function (e) { out.push(e.message); });
      if (!launch.message && !launch.errors) { out.push(launch.__typename); }
    }
    return out;
  }

  function launch(form, params) {
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    show(["Launching…"], false);
    var headers = {"Content-Type": "application/json", "Accept": "application/json"};
    headers[config.tokenHeader] = token;
    headers[config.nonceHeader] = form.dataset.nonce;
    fetch(config.graphql, {
      method: "POST", credentials: "same-origin", headers: headers,
      body: JSON.stringify({operationName: "B2calReviewLaunch", query: config.query, variables: {executionParams: params}})
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = JSON.parse(text); } catch (e) { body = {error: "HTTP " + response.status + ": " + text.slice(0, 300)}; }
        var launch = body && body.data && body.data.launchRun;
        if (response.ok && launch && launch.__typename === "LaunchRunSuccess") {
          show(["Run " + launch.run.runId + " launched; following it…"], false);
          window.location.assign(config.bucketUrl + "?run=" + encodeURIComponent(launch.run.runId) + "#review");
          return;
        }
        var lines = messages(body);
        show(["Refused:"].concat(lines.length ? lines : ["HTTP " + response.status]), true);
      });
    }).catch(function (error) {
      show(["The request failed: " + error], true);
    });
    // A nonce is single use: a second try needs a fresh page.
    form.dataset.nonce = "";
  }

  var signOff = document.getElementById("sign-off-form");
  if (signOff) {
    document.getElementById("sign-off").addEventListener("click", function () {
      signOff.querySelector(".confirm").hidden = false;
      document.getElementById("sign-off").hidden = true;
    });
    signOff.addEventListener("submit", function (event) {
      event.preventDefault();
      launch(signOff, config.params["sign-off"]);
    });
  }
  var reject = document.getElementById("reject-form");
  if (reject) {
    reject.addEventListener("submit", function (event) {
      event.preventDefault();
      var reason = document.getElementById("reject-reason").value.trim();
      if (!reason) { show(["Give a reason the calibration experts can act on."], true); return; }
      var params = JSON.parse(JSON.stringify(config.params["reject"]));
      var ops = params.runConfigData.ops;
      Object.keys(ops).forEach(function (op) { ops[op].config.reason = reason; });
      launch(reject, params);
    });
  }
})();
