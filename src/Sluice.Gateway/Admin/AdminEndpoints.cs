using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Sluice.Gateway.Configuration;
using Sluice.Gateway.Configuration.Model;
using Sluice.Gateway.Hosting;
using Sluice.Topics;

namespace Sluice.Gateway.Admin;

/// <summary>
/// The admin API of the contract under <c>admin.path</c>: the dashboard, <c>metrics</c> (Prometheus, through
/// OpenTelemetry's exporter), <c>healthz</c>, <c>connections</c> (list, send into either leg, close),
/// <c>topics/{T}</c> (publish), and the dashboard's live feed <c>events</c> and <c>tap</c>.
/// </summary>
internal static class AdminEndpoints
{
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web) { WriteIndented = false };

    public static void AddServices(IServiceCollection services, GatewayConfig config)
    {
        // OTEL_SERVICE_NAME, when set, still wins over this default.
        var telemetry = services.AddOpenTelemetry().ConfigureResource(resource => resource.AddService("sluice-gateway")).WithMetrics(metrics => metrics
            .AddMeter(SluiceDiagnostics.MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel", "System.Runtime")
            .AddPrometheusExporter());
        // Traces leave the process only when the operator names a collector, with OpenTelemetry's standard variable
        // (OTEL_EXPORTER_OTLP_ENDPOINT; OTEL_TRACES_SAMPLER and the other OTEL_* variables apply as usual).
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT")))
        {
            telemetry.WithTracing(tracing => tracing.AddSource(SluiceDiagnostics.ActivitySourceName).AddOtlpExporter());
        }
        services.AddHealthChecks();
        services.AddSingleton<DashboardState>();
        services.AddSingleton<MessageTap>();
        services.AddSingleton<DashboardSnapshots>();
        services.AddSingleton<ClusterAdmin>();
        var feed = new OutcomeFeed();
        services.AddSingleton(feed);
        services.AddLogging(logging =>
        {
            logging.AddProvider(feed);
            logging.AddFilter<OutcomeFeed>("Sluice", LogLevel.Debug);
        });
        _ = config;
    }

    public static void Map(WebApplication app, GatewayRuntime runtime)
    {
        var path = runtime.Config.Admin.Path;
        var authentication = new AdminAuthentication(runtime, new LoginThrottle(app.Services.GetService<TimeProvider>() ?? TimeProvider.System));
        app.Use((context, next) => authentication.InvokeAsync(context, next));
        app.Services.GetRequiredService<DashboardState>();

        app.MapHealthChecks(path + "/healthz", new HealthCheckOptions
        {
            ResultStatusCodes = { [Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Degraded] = 200 },
            ResponseWriter = WriteHealthAsync,
        });
        app.MapPrometheusScrapingEndpoint(path + "/metrics");

        var admin = app.MapGroup(path);
        admin.MapGet("/", (HttpContext context) => DashboardAssets.Assets.WriteAsync(context, "index.html"));
        admin.MapGet("/dashboard.js", (HttpContext context) => DashboardAssets.Assets.WriteAsync(context, "dashboard.js"));
        admin.MapGet("/dashboard.css", (HttpContext context) => DashboardAssets.Assets.WriteAsync(context, "dashboard.css"));
        admin.MapPost("/login", async (HttpContext context) =>
        {
            var form = context.Request.HasFormContentType ? await context.Request.ReadFormAsync() : null;
            return authentication.Login(context, form?["key"].ToString());
        }).DisableAntiforgery();

        // Every node's connections, and send and close by id on whichever node holds the connection (ClusterAdmin).
        var cluster = app.Services.GetRequiredService<ClusterAdmin>();
        admin.MapGet("/connections", (HttpContext context, string? route, string? subject, string? node) => cluster.ListAsync(context, route, subject, node));

        admin.MapPost("/connections/{id}/send", async (HttpContext context, string id, string? to, HttpRequest request) =>
        {
            if (to is not (null or "client" or "backend"))
            {
                return Results.BadRequest(new { error = "to must be client or backend" });
            }

            using var reader = new StreamReader(request.Body, Encoding.UTF8);
            return await cluster.SendAsync(context, id, to ?? "client", await reader.ReadToEndAsync());
        });

        // code is read as text so that "abc" or an overflow gets the same explained 400 as a code out of range.
        admin.MapPost("/connections/{id}/close", async (HttpContext context, string id, string? code, string? reason) =>
        {
            var status = (int)WebSocketCloseStatus.PolicyViolation;
            if (code is not null && !int.TryParse(code, NumberStyles.None, CultureInfo.InvariantCulture, out status))
            {
                return Results.BadRequest(new { error = $"code '{code}' is not a close code: 1000-1003, 1007-1014 or 3000-4999" });
            }

            if (status is not ((>= 1000 and <= 1003) or (>= 1007 and <= 1014) or (>= 3000 and <= 4999)))
            {
                return Results.BadRequest(new { error = $"{status} is not a close code that may be sent (1000-1003, 1007-1014, 3000-4999)" });
            }

            // A close frame holds at most 123 bytes of reason: say so rather than cut the operator's text.
            if (reason is not null && Encoding.UTF8.GetByteCount(reason) > WebSocketCloseReason.MaxBytes)
            {
                return Results.BadRequest(new { error = $"reason is {Encoding.UTF8.GetByteCount(reason)} bytes of UTF-8; a close frame holds at most {WebSocketCloseReason.MaxBytes}" });
            }

            return await cluster.CloseAsync(context, id, status, reason ?? "closed by an administrator");
        });

        admin.MapGet("/nodes", (CancellationToken cancellationToken) => cluster.NodesAsync(cancellationToken));

        // User targeting: every connection of the subject on every node, after the outbound chain.
        admin.MapPost("/subjects/{subject}/send", async (HttpContext context, string subject, IWebSocketUsers users) =>
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var result = await users.SendToSubjectAsync(subject, WebSocketMessage.FromText(await reader.ReadToEndAsync()), context.RequestAborted);
            if (result.IsPartial)
            {
                context.Response.Headers["Sluice-Partial"] = "true";
                context.Response.Headers["Sluice-Missing-Nodes"] = string.Join(",", result.Missing);
            }

            return Results.Json(new { subject, delivered = result.Delivered, nodes = result.Nodes, partial = result.IsPartial, missing = result.Missing }, s_json);
        });

        admin.MapPost("/topics/{topic}", async (string topic, string? @namespace, HttpRequest request, IWebSocketTopics topics, IOptions<TopicOptions> topicOptions) =>
        {
            // The pubsub handler's rule, so the admin API publishes to exactly the topics clients can subscribe to.
            if (TopicName.GetError(topic, topicOptions.Value.MaxTopicLength) is { } invalid)
            {
                return Results.BadRequest(new { error = invalid });
            }

            JsonNode? data;
            try
            {
                data = await JsonNode.ParseAsync(request.Body);
            }
            catch (JsonException ex)
            {
                return Results.BadRequest(new { error = $"the body must be JSON: {ex.Message}" });
            }

            // As the pubsub route of that namespace would publish it: with an offset when the route keeps history.
            var route = runtime.Config.Routes.Select(r => r.Handler?.Type == "pubsub" ? r.Handler.Options as PubSubHandlerOptions ?? new PubSubHandlerOptions() : null)
                .FirstOrDefault(o => o is not null && o.Namespace == @namespace);
            if (route is null && @namespace is not null)
            {
                return Results.NotFound(new { error = $"no pubsub route has the namespace '{@namespace}'" });
            }

            try
            {
                await topics.PublishPubSubAsync(topic, data, PubSubPermissions.ToProtocolOptions(route ?? new PubSubHandlerOptions()));
            }
            catch (Exception ex) when (ex is not OperationCanceledException and not ArgumentException)
            {
                return Results.Json(new { error = $"not published: the history is unavailable ({ex.GetType().Name})" }, s_json, statusCode: StatusCodes.Status503ServiceUnavailable);
            }

            return Results.Json(new { topic, subscribers = topics.GetSubscriberCount(TopicName.InNamespace(@namespace, topic)) }, s_json);
        });

        admin.MapPost("/tap", (string route, bool? enabled, MessageTap tap) =>
        {
            if (!runtime.Config.Routes.Any(r => r.Path == route))
            {
                return Results.NotFound(new { error = $"no route '{route}'" });
            }

            tap.Enable(route, enabled ?? true);
            return Results.Json(new { route, enabled = enabled ?? true, until = DateTimeOffset.UtcNow + MessageTap.Lifetime }, s_json);
        });

        admin.MapGet("/backends", () => Results.Json(DescribeBackends(runtime.Config, runtime.Pools), s_json));

        admin.MapGet("/events", (HttpContext context, DashboardSnapshots snapshots) => snapshots.StreamAsync(context));
        admin.MapGet("/snapshot", (HttpContext context, string? node, DashboardSnapshots snapshots) =>
            node is null || node == cluster.NodeId ? Task.FromResult(Results.Json(snapshots.Create(0).Snapshot, s_json)) : cluster.SnapshotAsync(context, node));
    }

    /// <summary>
    /// healthz as JSON: the overall status and each check's status and description, so that an operator sees why a
    /// node is degraded (Redis unreachable, cluster rate limits counting per node) and not only that it is.
    /// </summary>
    private static Task WriteHealthAsync(HttpContext context, Microsoft.Extensions.Diagnostics.HealthChecks.HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var body = new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body, s_json));
    }


    /// <summary>
    /// Every proxy route's targets with their health, open connections, last error and last check, in file order.
    /// A target written as <c>env:NAME</c> is shown as that; the others without their query.
    /// </summary>
    public static IEnumerable<object> DescribeBackends(GatewayConfig config, IReadOnlyDictionary<string, Sluice.Proxy.BackendPool> pools) =>
        config.Routes.Where(r => r.Proxy is not null && pools.ContainsKey(r.Path)).Select(route =>
        {
            var proxy = route.Proxy!;
            var written = proxy.Targets ?? [proxy.Target!];
            var states = pools[route.Path].GetTargets();
            return new
            {
                route = route.Path,
                loadBalancing = proxy.LoadBalancing,
                healthCheck = proxy.HealthCheck is not null,
                targets = states.Select((state, i) =>
                {
                    var concealed = i < written.Count ? config.Secrets.Conceal(written[i]) : state.Target;
                    return new
                    {
                        target = i < written.Count && concealed != written[i] ? concealed : config.Secrets.Conceal(state.Target),
                        healthy = state.Healthy,
                        openConnections = state.OpenConnections,
                        lastError = state.LastError is null ? null : config.Secrets.Conceal(state.LastError),
                        lastErrorAt = state.LastErrorAt,
                        lastCheckAt = state.LastCheckAt,
                    };
                }).ToList(),
            };
        }).ToList();


    public static object Describe(WebSocketConnection connection, string node) => new
    {
        id = connection.Id,
        node,
        route = connection.RoutePattern,
        subject = connection.Subject,
        remoteIp = connection.RemoteIpAddress?.ToString(),
        connectedAt = connection.ConnectedAt,
        ageSeconds = Math.Round((DateTimeOffset.UtcNow - connection.ConnectedAt).TotalSeconds, 1),
        subprotocol = connection.SubProtocol,
        backend = connection is ProxyConnection proxied ? Sluice.Proxy.WebSocketProxyUrls.WithoutQuery(proxied.BackendUri) : null,
        inbound = new { messages = connection.InboundMessages, bytes = connection.InboundBytes, lastAt = connection.LastInboundAt },
        outbound = new { messages = connection.OutboundMessages, bytes = connection.OutboundBytes, lastAt = connection.LastOutboundAt },
        topics = connection.Topics,
    };
}

internal static class DashboardAssets
{
    public static readonly EmbeddedAssets Assets = new("Sluice.Gateway.Admin.wwwroot.");
}
