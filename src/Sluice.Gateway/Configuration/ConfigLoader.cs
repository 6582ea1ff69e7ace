using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Routing.Patterns;
using Sluice.Gateway.Plugins;
using Sluice.Policies;
using Sluice.Policies.Json;

namespace Sluice.Gateway.Configuration;

/// <summary>The outcome of loading a configuration file: the configuration, or every error with its JSON path.</summary>
internal sealed record ConfigResult(GatewayConfig? Config, IReadOnlyList<string> Errors)
{
    public bool IsValid => Config is not null;
}

/// <summary>
/// Reads, checks and resolves a gateway configuration file (docs/gateway-contract.md): JSON with comments and
/// trailing commas; every error reported at once with its JSON path; <c>env:NAME</c> values read from the
/// environment; every policy created (so a missing schema file or a broken script is an error here, not at the
/// first message).
/// </summary>
internal static class ConfigLoader
{
    private static readonly JsonDocumentOptions s_documentOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = 64 };
    private static readonly JsonNodeOptions s_nodeOptions = new() { PropertyNameCaseInsensitive = false };

    /// <param name="path">The configuration file.</param>
    /// <param name="services">Services the policies are created with.</param>
    /// <param name="previous">The running configuration's policies: an unchanged one is kept, with its state (rate-limit budgets).</param>
    public static ConfigResult Load(string path, IServiceProvider services, IReadOnlyDictionary<string, PolicyInstance>? previous = null)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new ConfigResult(null, [$"{path}: cannot be read: {ex.Message}"]);
        }

        return Parse(text, Path.GetDirectoryName(Path.GetFullPath(path))!, services, previous);
    }

    public static ConfigResult Parse(string text, string baseDirectory, IServiceProvider services, IReadOnlyDictionary<string, PolicyInstance>? previous = null)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text, s_nodeOptions, s_documentOptions);
        }
        catch (JsonException ex)
        {
            return new ConfigResult(null, [$"(file): not valid JSON at line {(ex.LineNumber ?? 0) + 1}, position {(ex.BytePositionInLine ?? 0) + 1}: {FirstSentence(ex.Message)}"]);
        }

        var walker = new JsonWalker();
        ResolveEnvironment(root, string.Empty, walker);
        var obj = walker.Object(root, "(file)", required: true);
        if (obj is null)
        {
            return new ConfigResult(null, walker.Errors);
        }

        walker.KnownKeys(obj, string.Empty, "$schema", "listen", "limits", "admin", "backplane", "routes", "policies");
        var listen = ReadListen(obj, walker);
        var limits = ReadLimits(walker.Object(obj["limits"], "limits"), walker);
        var admin = ReadAdmin(walker.Object(obj["admin"], "admin"), walker);
        var backplane = ReadBackplane(walker.Object(obj["backplane"], "backplane"), walker);
        var plugins = new PluginCatalog(baseDirectory);
        var policies = ReadPolicies(walker.Object(obj["policies"], "policies"), walker, plugins, services, baseDirectory, previous);
        var routes = ReadRoutes(obj["routes"], walker, policies, plugins, services);

        if (walker.Errors.Count > 0)
        {
            DisposeNew(policies.Values, previous);
            return new ConfigResult(null, [.. walker.Errors.Select(walker.Secrets.Conceal)]);
        }

        return new ConfigResult(
            new GatewayConfig
            {
                Listen = listen,
                Limits = limits,
                Admin = admin,
                Backplane = backplane,
                Routes = routes,
                Policies = policies,
                BaseDirectory = baseDirectory,
                Secrets = walker.Secrets,
            },
            []);
    }

    /// <summary>Disposes the policies of a configuration that will not run, except those it shares with the running one.</summary>
    public static void DisposeNew(IEnumerable<PolicyInstance> created, IReadOnlyDictionary<string, PolicyInstance>? keep)
    {
        foreach (var instance in created)
        {
            if (keep is null || !keep.Values.Any(k => ReferenceEquals(k.Policy, instance.Policy)))
            {
                (instance.Policy as IDisposable)?.Dispose();
            }
        }
    }

    private static void ResolveEnvironment(JsonNode? node, string path, JsonWalker walker)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, child) in obj.ToList())
                {
                    if (child is JsonValue value && value.TryGetValue(out string? text) && text.StartsWith("env:", StringComparison.Ordinal))
                    {
                        obj[key] = Resolve(text, JsonWalker.Join(path, key), walker);
                    }
                    else
                    {
                        ResolveEnvironment(child, JsonWalker.Join(path, key), walker);
                    }
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is JsonValue value && value.TryGetValue(out string? text) && text.StartsWith("env:", StringComparison.Ordinal))
                    {
                        array[i] = Resolve(text, $"{path}[{i}]", walker);
                    }
                    else
                    {
                        ResolveEnvironment(array[i], $"{path}[{i}]", walker);
                    }
                }

                break;
        }
    }

    private static JsonValue Resolve(string reference, string path, JsonWalker walker)
    {
        var name = reference[4..];
        var value = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrEmpty(value))
        {
            // The value stays "env:NAME" so that later checks do not pile up errors about it; the error says why.
            walker.Error(path, $"environment variable {name} is not set");
            return JsonValue.Create(reference);
        }

        walker.Secrets.Add(value, name);
        return JsonValue.Create(value);
    }

    private static List<string> ReadListen(JsonObject root, JsonWalker walker)
    {
        var listen = walker.Strings(root, "listen", string.Empty, allowSingle: true);
        for (var i = 0; i < listen.Count; i++)
        {
            // Kestrel's forms (http://*:80, http://+:80, http://localhost:80) are not all URIs: check the scheme only.
            if (listen[i].StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            {
                // TLS is not configured by the file (no certificate settings yet): terminate it in front of the gateway.
                walker.Error($"listen[{i}]", $"'{listen[i]}': https is not supported in the file yet; terminate TLS in front of the gateway (a load balancer, nginx) and listen on http://");
            }
            else if (!listen[i].StartsWith("http://", StringComparison.OrdinalIgnoreCase) || listen[i].Length <= "http://".Length)
            {
                walker.Error($"listen[{i}]", $"'{listen[i]}' is not an http:// URL");
            }
        }

        return listen;
    }

    private static LimitsConfig ReadLimits(JsonObject? limits, JsonWalker walker)
    {
        var defaults = new LimitsConfig();
        if (limits is null)
        {
            return defaults;
        }

        walker.KnownKeys(limits, "limits", "maxMessageBytes", "idleTimeoutSeconds", "keepAliveSeconds", "maxConnections", "drainSeconds", "closeTimeoutSeconds");
        return new LimitsConfig
        {
            MaxMessageBytes = walker.Integer(limits, "maxMessageBytes", "limits", 1) ?? defaults.MaxMessageBytes,
            IdleTimeoutSeconds = walker.Number(limits, "idleTimeoutSeconds", "limits", 0, TimeSpan.FromDays(365).TotalSeconds) ?? defaults.IdleTimeoutSeconds,
            KeepAliveSeconds = walker.Number(limits, "keepAliveSeconds", "limits", 0, TimeSpan.FromDays(1).TotalSeconds) ?? defaults.KeepAliveSeconds,
            MaxConnections = walker.Integer(limits, "maxConnections", "limits", 1),
            DrainSeconds = walker.Number(limits, "drainSeconds", "limits", 0, 3600) ?? defaults.DrainSeconds,
            CloseTimeoutSeconds = walker.Number(limits, "closeTimeoutSeconds", "limits", 0.1, 3600) ?? defaults.CloseTimeoutSeconds,
        };
    }

    private static AdminConfig ReadAdmin(JsonObject? admin, JsonWalker walker)
    {
        if (admin is null)
        {
            return new AdminConfig();
        }

        walker.KnownKeys(admin, "admin", "path", "apiKey");
        var path = walker.String(admin, "path", "admin") ?? "/_sluice";
        if (!path.StartsWith('/') || (path.Length > 1 && path.EndsWith('/')) || path.Contains('{', StringComparison.Ordinal))
        {
            walker.Error("admin.path", $"'{path}' must start with '/', not end with one, and hold no route parameters");
        }

        var key = walker.String(admin, "apiKey", "admin");
        if (key is { Length: < 16 } && !key.StartsWith("env:", StringComparison.Ordinal))
        {
            walker.Error("admin.apiKey", "must be at least 16 characters");
        }

        return new AdminConfig { Path = path, ApiKey = key };
    }

    private static BackplaneConfig? ReadBackplane(JsonObject? backplane, JsonWalker walker)
    {
        if (backplane is null)
        {
            return null;
        }

        walker.KnownKeys(backplane, "backplane", "type", "connection", "channelPrefix");
        var type = walker.String(backplane, "type", "backplane", required: true);
        if (type is not null and not "redis")
        {
            walker.Error("backplane.type", $"unknown backplane '{type}' (known: redis)");
        }

        var connection = walker.String(backplane, "connection", "backplane", required: true);
        var prefix = walker.String(backplane, "channelPrefix", "backplane") ?? "sluice";
        return new BackplaneConfig(type ?? "redis", connection ?? string.Empty, prefix);
    }

    private static Dictionary<string, PolicyInstance> ReadPolicies(
        JsonObject? policies, JsonWalker walker, PluginCatalog plugins, IServiceProvider services, string baseDirectory, IReadOnlyDictionary<string, PolicyInstance>? previous)
    {
        var result = new Dictionary<string, PolicyInstance>(StringComparer.Ordinal);
        if (policies is null)
        {
            return result;
        }

        foreach (var (name, node) in policies)
        {
            var path = $"policies.{name}";
            var definition = walker.Object(node, path, required: true);
            if (definition is null)
            {
                continue;
            }

            walker.KnownKeys(definition, path, "type", "options", "when");
            var typeName = walker.String(definition, "type", path, required: true);
            if (typeName is null)
            {
                continue;
            }

            var type = ResolvePolicyType(typeName, $"{path}.type", walker, plugins);
            if (type is null)
            {
                continue;
            }

            var optionsNode = definition["options"] ?? new JsonObject();
            var options = Bind(optionsNode, type.OptionsType, $"{path}.options", walker);
            PolicyCondition? when = null;
            if (definition["when"] is { } whenNode)
            {
                if (type.Kind == PolicyKind.Upgrade)
                {
                    walker.Error($"{path}.when", "an upgrade policy runs once per connection; 'when' applies to message policies only");
                }
                else
                {
                    when = Bind(whenNode, typeof(PolicyCondition), $"{path}.when", walker) as PolicyCondition;
                }
            }

            if (options is null || (definition["when"] is not null && when is null && type.Kind == PolicyKind.Message))
            {
                continue;
            }

            var fingerprint = $"{typeName}|{optionsNode.ToJsonString()}|{definition["when"]?.ToJsonString()}|{baseDirectory}";
            if (previous is not null && previous.TryGetValue(name, out var running) && running.Fingerprint == fingerprint)
            {
                result[name] = running;
                continue;
            }

            try
            {
                var policy = type.Create(options, new PolicyCreationContext(name, services, baseDirectory));
                result[name] = new PolicyInstance(name, type.Kind, policy, when, fingerprint);
            }
            catch (PolicyConfigurationException ex)
            {
                foreach (var error in ex.Errors)
                {
                    walker.Error($"{path}.options.{error.Split(':')[0]}", error[(error.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim());
                }
            }
            catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or FormatException or IOException or System.Reflection.TargetInvocationException)
            {
                walker.Error(path, $"could not be created: {(ex.InnerException ?? ex).Message}");
            }
        }

        return result;
    }

    private static PolicyType? ResolvePolicyType(string typeName, string path, JsonWalker walker, PluginCatalog plugins)
    {
        if (BuiltInPolicyTypes.All.TryGetValue(typeName, out var builtIn))
        {
            return builtIn;
        }

        if (!PluginCatalog.IsTypeName(typeName))
        {
            var suggestion = JsonWalker.Suggest(typeName, BuiltInPolicyTypes.All.Keys);
            walker.Error(path, $"unknown policy type '{typeName}'{(suggestion is null ? string.Empty : $"; did you mean '{suggestion}'?")} (built-in: {string.Join(", ", BuiltInPolicyTypes.All.Keys)}; or a plugin type 'Namespace.Type, Assembly')");
            return null;
        }

        var type = plugins.Find(typeName, out var error);
        if (type is null)
        {
            walker.Error(path, error!);
            return null;
        }

        var described = PluginCatalog.DescribePolicy(type, typeName, out error);
        if (described is null)
        {
            walker.Error(path, error!);
        }

        return described;
    }

    /// <summary>Binds options with the policies' own rules (unknown members are errors) and runs their validation.</summary>
    public static object? Bind(JsonNode node, Type optionsType, string path, JsonWalker walker)
    {
        if (optionsType == typeof(PluginCatalog.NoOptions))
        {
            if (node is not JsonObject { Count: 0 })
            {
                walker.Error(path, "this type takes no options");
                return null;
            }

            return new PluginCatalog.NoOptions();
        }

        object? options;
        try
        {
            options = node.Deserialize(optionsType, PolicyJson.OptionsBinding);
        }
        catch (JsonException ex)
        {
            var member = ex.Path is { Length: > 2 } jsonPath ? path + jsonPath[1..] : path;
            walker.Error(member, DescribeBindingError(ex, optionsType));
            return null;
        }
        catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException or ArgumentException)
        {
            walker.Error(path, ex.Message);
            return null;
        }

        if (options is null)
        {
            walker.Error(path, "must be an object");
            return null;
        }

        if (options is IPolicyOptions validatable)
        {
            foreach (var error in validatable.Validate())
            {
                var colon = error.IndexOf(':', StringComparison.Ordinal);
                walker.Error(colon > 0 ? $"{path}.{error[..colon]}" : path, colon > 0 ? error[(colon + 1)..].Trim() : error);
            }

            if (walker.Errors.Any(e => e.StartsWith(path + ".", StringComparison.Ordinal) || e.StartsWith(path + ":", StringComparison.Ordinal)))
            {
                return null;
            }
        }

        return options;
    }

    private static string DescribeBindingError(JsonException ex, Type optionsType)
    {
        if (ex.Message.Contains("could not be mapped", StringComparison.Ordinal))
        {
            var member = ex.Path?.Split('.', '[').LastOrDefault() ?? "?";
            var known = optionsType.GetProperties().Where(p => p.CanWrite)
                .Select(p => p.GetCustomAttributes(typeof(System.Text.Json.Serialization.JsonPropertyNameAttribute), false).Cast<System.Text.Json.Serialization.JsonPropertyNameAttribute>().FirstOrDefault()?.Name
                    ?? JsonNamingPolicy.CamelCase.ConvertName(p.Name))
                .ToList();
            var suggestion = JsonWalker.Suggest(member, known);
            return suggestion is null
                ? $"unknown option (known: {string.Join(", ", known)})"
                : $"unknown option; did you mean '{suggestion}'?";
        }

        var name = ex.Path?.Split('.', '[').LastOrDefault();
        var property = optionsType.GetProperties().FirstOrDefault(p => string.Equals(JsonNamingPolicy.CamelCase.ConvertName(p.Name), name, StringComparison.Ordinal));
        var type = property is null ? null : Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        if (type is { IsEnum: true })
        {
            return $"must be one of {string.Join(", ", Enum.GetNames(type).Select(JsonNamingPolicy.KebabCaseLower.ConvertName))}";
        }

        if (type is not null)
        {
            return $"must be {TypeName(type)}";
        }

        return FirstSentence(ex.Message.Replace("The JSON value could not be converted to", "expected a value of type", StringComparison.Ordinal));
    }

    private static string TypeName(Type type) => type switch
    {
        _ when type == typeof(string) => "a string",
        _ when type == typeof(bool) => "true or false",
        _ when type == typeof(int) || type == typeof(long) => "a whole number",
        _ when type == typeof(double) => "a number",
        _ when type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>) => "a list",
        _ when type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>) => "an object",
        _ => "an object",
    };

    private static List<RouteConfig> ReadRoutes(JsonNode? node, JsonWalker walker, IReadOnlyDictionary<string, PolicyInstance> policies, PluginCatalog plugins, IServiceProvider services)
    {
        var routes = new List<RouteConfig>();
        if (node is not JsonArray array)
        {
            walker.Error("routes", node is null ? "is required: list at least one route" : $"must be a list, not {JsonWalker.Describe(node)}");
            return routes;
        }

        if (array.Count == 0)
        {
            walker.Error("routes", "list at least one route");
        }

        var seen = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < array.Count; i++)
        {
            var path = $"routes[{i}]";
            var route = walker.Object(array[i], path, required: true);
            if (route is null)
            {
                continue;
            }

            walker.KnownKeys(route, path, "path", "proxy", "handler", "upgrade", "inbound", "outbound", "compression");
            var routePath = walker.String(route, "path", path, required: true);
            if (routePath is not null)
            {
                if (!routePath.StartsWith('/'))
                {
                    walker.Error($"{path}.path", $"'{routePath}' must start with '/'");
                }
                else
                {
                    try
                    {
                        RoutePatternFactory.Parse(routePath);
                    }
                    catch (RoutePatternException ex)
                    {
                        walker.Error($"{path}.path", $"'{routePath}' is not a route template: {ex.Message}");
                    }
                }

                if (seen.TryGetValue(routePath, out var first))
                {
                    walker.Error($"{path}.path", $"'{routePath}' is already the path of routes[{first}]");
                }
                else
                {
                    seen[routePath] = i;
                }
            }

            var hasProxy = route.ContainsKey("proxy");
            var hasHandler = route.ContainsKey("handler");
            if (hasProxy == hasHandler)
            {
                walker.Error(path, hasProxy ? "has both proxy and handler; give exactly one" : "has neither proxy nor handler; give exactly one");
            }

            var proxy = hasProxy ? ReadProxy(walker.Object(route["proxy"], $"{path}.proxy", required: true), $"{path}.proxy", routePath, walker) : null;
            var handler = hasHandler ? ReadHandler(walker.Object(route["handler"], $"{path}.handler", required: true), $"{path}.handler", walker, plugins, services) : null;

            routes.Add(new RouteConfig
            {
                Index = i,
                Path = routePath ?? string.Empty,
                Proxy = proxy,
                Handler = handler,
                Upgrade = PolicyList(route, "upgrade", path, PolicyKind.Upgrade, walker, policies),
                Inbound = PolicyList(route, "inbound", path, PolicyKind.Message, walker, policies),
                Outbound = PolicyList(route, "outbound", path, PolicyKind.Message, walker, policies),
                Compression = walker.Boolean(route, "compression", path) ?? false,
            });
        }

        return routes;
    }

    private static ProxyRouteConfig? ReadProxy(JsonObject? proxy, string path, string? routePath, JsonWalker walker)
    {
        if (proxy is null)
        {
            return null;
        }

        walker.KnownKeys(proxy, path, "target", "forwardHeaders", "connectTimeoutMs", "compression");
        var target = walker.String(proxy, "target", path, required: true);
        if (target is not null && routePath is not null && !WebSocketProxyTarget.TryParse(target, routePath, out _, out var error))
        {
            walker.Error($"{path}.target", error);
        }

        var headers = walker.Strings(proxy, "forwardHeaders", path);
        for (var i = 0; i < headers.Count; i++)
        {
            if (!Sluice.Proxy.WebSocketProxyHeaders.CanForward(headers[i]))
            {
                walker.Error($"{path}.forwardHeaders[{i}]", $"'{headers[i]}' belongs to one hop's handshake or is set by the gateway itself; it cannot be forwarded");
            }
        }

        return new ProxyRouteConfig(
            target ?? string.Empty,
            headers,
            walker.Integer(proxy, "connectTimeoutMs", path, 1, 600_000) ?? 5000,
            walker.Boolean(proxy, "compression", path) ?? false);
    }

    private static HandlerRouteConfig? ReadHandler(JsonObject? handler, string path, JsonWalker walker, PluginCatalog plugins, IServiceProvider services)
    {
        if (handler is null)
        {
            return null;
        }

        walker.KnownKeys(handler, path, "type", "options");
        var type = walker.String(handler, "type", path, required: true);
        switch (type)
        {
            case null:
                return null;
            case "echo":
                if (handler.ContainsKey("options"))
                {
                    walker.Error($"{path}.options", $"the {type} handler takes no options");
                }

                return new HandlerRouteConfig(type, null);
            case "pubsub":
                int? maxSubscriptions = null;
                if (walker.Object(handler["options"], $"{path}.options") is { } pubsub)
                {
                    walker.KnownKeys(pubsub, $"{path}.options", "maxSubscriptions");
                    maxSubscriptions = walker.Integer(pubsub, "maxSubscriptions", $"{path}.options", 1, 1_000_000);
                }

                return new HandlerRouteConfig(type, null, maxSubscriptions);
        }

        if (!PluginCatalog.IsTypeName(type))
        {
            walker.Error($"{path}.type", $"unknown handler '{type}' (built-in: echo, pubsub; or a plugin type 'Namespace.Type, Assembly')");
            return null;
        }

        var handlerType = plugins.Find(type, out var error);
        if (handlerType is null || !typeof(IMessageHandler).IsAssignableFrom(handlerType))
        {
            walker.Error($"{path}.type", error ?? $"'{type}' does not implement Sluice.IMessageHandler");
            return null;
        }

        var optionsType = PluginCatalog.OptionsTypeOf(handlerType);
        object? options = null;
        if (optionsType is not null)
        {
            options = Bind(handler["options"] ?? new JsonObject(), optionsType, $"{path}.options", walker);
        }
        else if (handler["options"] is not null and not JsonObject { Count: 0 })
        {
            walker.Error($"{path}.options", "this handler takes no options");
        }

        try
        {
            return new HandlerRouteConfig(type, PluginCatalog.Instantiate(handlerType, options, type, services));
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or System.Reflection.TargetInvocationException)
        {
            walker.Error(path, $"could not be created: {(ex.InnerException ?? ex).Message}");
            return null;
        }
    }

    private static List<string> PolicyList(JsonObject route, string key, string path, PolicyKind kind, JsonWalker walker, IReadOnlyDictionary<string, PolicyInstance> policies)
    {
        var names = walker.Strings(route, key, path);
        for (var i = 0; i < names.Count; i++)
        {
            var at = $"{path}.{key}[{i}]";
            if (!policies.TryGetValue(names[i], out var policy))
            {
                // A policy whose own definition has errors is already reported; do not report it again here.
                if (!walker.Errors.Any(e => e.StartsWith($"policies.{names[i]}", StringComparison.Ordinal)))
                {
                    var suggestion = JsonWalker.Suggest(names[i], policies.Keys);
                    walker.Error(at, $"unknown policy '{names[i]}'{(suggestion is null ? string.Empty : $"; did you mean '{suggestion}'?")}");
                }
            }
            else if (policy.Kind != kind)
            {
                walker.Error(at, kind == PolicyKind.Message
                    ? $"'{names[i]}' is an upgrade policy: list it under upgrade"
                    : $"'{names[i]}' is a message policy: list it under inbound or outbound");
            }
        }

        return names;
    }

    private static string FirstSentence(string message)
    {
        var end = message.IndexOf(". ", StringComparison.Ordinal);
        return (end > 0 ? message[..end] : message).TrimEnd('.');
    }
}
