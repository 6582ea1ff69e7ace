using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Primitives;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// The gateway's routes as an <see cref="EndpointDataSource"/> whose endpoints are replaced on reload, the way
/// YARP's configuration manager works. Routing picks up the new endpoints for new requests; connections already
/// open keep running on the endpoints they were accepted by.
/// </summary>
internal sealed class GatewayEndpointDataSource : EndpointDataSource, IDisposable
{
    private readonly Lock _lock = new();
    private IReadOnlyList<Endpoint> _endpoints = [];
    private CancellationTokenSource _changed = new();

    public override IReadOnlyList<Endpoint> Endpoints => Volatile.Read(ref _endpoints);

    public override IChangeToken GetChangeToken() => new CancellationChangeToken(Volatile.Read(ref _changed).Token);

    /// <summary>Builds endpoints with Sluice's ordinary mapping methods and publishes them.</summary>
    public void Update(IServiceProvider services, Action<IEndpointRouteBuilder> map)
    {
        var builder = new ScratchRouteBuilder(services);
        map(builder);
        var endpoints = builder.DataSources.SelectMany(source => source.Endpoints).ToList();

        CancellationTokenSource previous;
        lock (_lock)
        {
            Volatile.Write(ref _endpoints, endpoints);
            previous = _changed;
            Volatile.Write(ref _changed, new CancellationTokenSource());
        }

        previous.Cancel();
        previous.Dispose();
    }

    public void Dispose() => _changed.Dispose();

    /// <summary>A route builder of our own, so that each configuration gets a fresh set of endpoints.</summary>
    private sealed class ScratchRouteBuilder(IServiceProvider services) : IEndpointRouteBuilder
    {
        public IServiceProvider ServiceProvider { get; } = services;

        public ICollection<EndpointDataSource> DataSources { get; } = [];

        public IApplicationBuilder CreateApplicationBuilder() => new ApplicationBuilder(ServiceProvider);
    }
}
