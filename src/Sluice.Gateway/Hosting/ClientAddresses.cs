using System.Net;
using IPNetwork = System.Net.IPNetwork;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.Options;
using Sluice.Proxy;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// <c>forwarded.trustedProxies</c>: when the peer is a trusted proxy, ASP.NET Core's forwarded-headers handling takes
/// the client's address from <c>X-Forwarded-For</c> and its scheme from <c>X-Forwarded-Proto</c>, before anything else
/// reads them: every <c>ip</c> partition, the connection caps, the logs, the admin API's loopback check and the
/// <c>X-Forwarded-For</c> sent to a backend. Without trusted proxies nothing is read: the peer is the client.
/// </summary>
/// <remarks>
/// The list follows reloads: each configuration gets its own <see cref="ForwardedHeadersMiddleware"/>, swapped in whole.
/// </remarks>
internal sealed class ClientAddresses(ILoggerFactory loggerFactory)
{
    private const string ForwardedFor = "X-Forwarded-For";

    // A chain longer than this is unusual; the walk stops there (the address reached was still vouched for by a
    // trusted proxy), so a header of thousands of entries costs no more than a short one.
    private const int MaxHops = 16;

    private ForwardedHeadersMiddleware? _middleware;

    /// <summary>Uses <paramref name="trusted"/> from the next request on; empty turns the handling off.</summary>
    public void Update(IReadOnlyList<IPNetwork> trusted)
    {
        if (trusted.Count == 0)
        {
            Volatile.Write(ref _middleware, null);
            return;
        }

        var options = new ForwardedHeadersOptions
        {
            ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto,
            ForwardLimit = MaxHops,
        };

        // The defaults trust loopback: only the file's list counts.
        options.KnownIPNetworks.Clear();
        options.KnownProxies.Clear();
        foreach (var network in trusted)
        {
            options.KnownIPNetworks.Add(network);
        }

        Volatile.Write(ref _middleware, new ForwardedHeadersMiddleware(static _ => Task.CompletedTask, loggerFactory, Options.Create(options)));
    }

    public Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (Volatile.Read(ref _middleware) is { } middleware)
        {
            Apply(context, middleware);
        }

        return next(context);
    }

    private static void Apply(HttpContext context, ForwardedHeadersMiddleware middleware)
    {
        var headers = context.Request.Headers;
        if (!headers.ContainsKey(ForwardedFor))
        {
            middleware.ApplyForwarders(context);
            return;
        }

        var peer = context.Connection.RemoteIpAddress;
        var before = headers.GetCommaSeparatedValues(ForwardedFor);
        middleware.ApplyForwarders(context);

        // The middleware leaves in the header the entries it did not take (or removes it when it took them all), and
        // changes nothing when the peer is not trusted.
        var consumed = before.Length - headers.GetCommaSeparatedValues(ForwardedFor).Length;
        if (peer is null || consumed <= 0)
        {
            return;
        }

        // What the backend is told: the client, then each trusted proxy up to our peer. The entries the walk did not
        // reach are left out: whoever wrote them, nobody trusted vouched for them.
        var chain = new List<string>(consumed + 1);
        for (var i = before.Length - consumed; i < before.Length; i++)
        {
            chain.Add(IPEndPoint.TryParse(before[i], out var endPoint) ? endPoint.Address.ToString() : before[i]);
        }

        chain.Add((peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer).ToString());
        context.Features.Set(new ForwardedForFeature(string.Join(", ", chain)));
    }
}
