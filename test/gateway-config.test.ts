// The gateway's configuration file: defaults, and errors that name the field.
import { describe, expect, it } from "vitest";
import { type ModelRoute, parseGatewayConfig } from "../controller/gateway/config.ts";
import { Gateway } from "../controller/gateway/gateway.ts";

describe("parseGatewayConfig", () => {
  it("fills in the defaults of a minimal model", () => {
    expect(parseGatewayConfig("models:\n  - name: add-numbers\n", "gw.yaml")).toEqual({
      models: [
        {
          name: "add-numbers",
          authentication: { enabled: true },
          queueTimeoutSeconds: 30,
          timeoutSeconds: 30,
          stopped: false,
          replicas: [],
        },
      ],
      apiKeys: [],
    });
    expect(parseGatewayConfig("", "empty.yaml")).toEqual({ models: [], apiKeys: [] });
  });

  it("takes replicas on Unix sockets, and a secret for them", () => {
    const text =
      "models:\n  - name: a\n    replicas:\n      - { id: r, url: 'unix:/run/modelship/r.sock', secret: s3cret }\n";
    expect(parseGatewayConfig(text, "gw.yaml").models[0]).toMatchObject({
      replicas: [{ id: "r", url: "unix:/run/modelship/r.sock", secret: "s3cret" }],
    });
  });

  it("is refused by the gateway with a secret that would break its header, and changes nothing", () => {
    const gateway = new Gateway();
    const model = parseGatewayConfig("models: [{name: a}]", "gw.yaml").models[0] as ModelRoute;
    const replicas = [{ id: "r", url: "http://127.0.0.1:1", secret: "s\r\nx-evil: 1" }];
    expect(() => gateway.apply({ models: [{ ...model, replicas }], apiKeys: [] })).toThrow(
      'model "a": replica r: secret must be printable ASCII without spaces',
    );
    expect(gateway.dispatchers()).toEqual([]);
  });

  it.each([
    ["models: [{name: Add}]", "gw.yaml: /models/0/name: must be a DNS-1123 label"],
    ["models: [{name: a, replica: []}]", 'gw.yaml: /models/0: unknown field "replica"'],
    [
      "models: [{name: a, accessKeySha256: hunter2}]",
      "gw.yaml: /models/0/accessKeySha256: must be a sha256 in hex",
    ],
    [
      "models: [{name: a, replicas: [{id: r, url: 'localhost:9000'}]}]",
      "gw.yaml: /models/0/replicas/0/url: must be an http:// base URL",
    ],
    [
      "models: [{name: a, queueTimeoutSeconds: -1}]",
      "gw.yaml: /models/0/queueTimeoutSeconds: must be >= 0",
    ],
    [
      "models: [{name: a, replicas: [{id: r, url: 'unix:relative.sock'}]}]",
      "gw.yaml: /models/0/replicas/0/url: must be an http:// base URL such as http://127.0.0.1:9001, or unix:/absolute/path.sock",
    ],
    [
      "models: [{name: a, replicas: [{id: r, url: 'http://127.0.0.1:1', secret: 'two words'}]}]",
      "gw.yaml: /models/0/replicas/0/secret: must be printable ASCII without spaces",
    ],
    ["models: [{name: a}, {name: a}]", 'gw.yaml: /models/1/name: model "a" is listed twice'],
    ["apiKeys: [{id: abc, user: u}]", "gw.yaml: /apiKeys/0: must have required property 'sha256'"],
    ["models: [{name: a", "gw.yaml: not YAML or JSON"],
  ])("%s → %s", (text, message) => {
    expect(() => parseGatewayConfig(text, "gw.yaml")).toThrow(message);
  });
});
