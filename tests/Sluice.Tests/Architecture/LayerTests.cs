using System.Text.RegularExpressions;

namespace Sluice.Tests.Architecture;

/// <summary>
/// docs/architecture.md's rule, checked on the source: each folder of src/Sluice uses only the types of its own
/// layer and of the layers below it. The check reads the files (no reflection: the library's folders share the
/// <c>Sluice</c> namespace), collects the type names each folder declares, and fails on a file that names a
/// type declared in a folder of a higher layer.
/// </summary>
public partial class LayerTests
{
    /// <summary>
    /// The layers, lowest first. Folders of one layer may use each other only where the layer says so: the core
    /// is one engine (a connection runs contexts through its route's chains, topics deliver to connections,
    /// diagnostics describe connections and contexts), while the two modes never use each other.
    /// </summary>
    private static readonly (string[] Folders, bool FoldersUseEachOther)[] s_layers =
    [
        ([RootFolder], false),
        (["Messages"], false),
        (["Protocol"], false),
        (["Transport"], false),
        (["Pipeline", "Connections", "Topics", "Diagnostics", "Endpoints"], true),
        (["Hosting", "Proxy"], false),
        (["DependencyInjection"], false),
    ];

    [Fact]
    public void EveryFolderOfTheLibrary_HasALayer()
    {
        var folders = Directory.GetDirectories(SourceRoot()).Select(Path.GetFileName).Where(f => f is not ("bin" or "obj" or "Properties"));

        var unlayered = folders.Where(f => !s_layers.Any(l => l.Folders.Contains(f))).ToList();
        Assert.True(unlayered.Count == 0, $"folders without a layer: {string.Join(", ", unlayered)}");
    }

    [Fact]
    public void EachLayer_UsesOnlyItselfAndTheLayersBelow()
    {
        // Every file, in subfolders too (each counts for its top folder), and the files at the root (the lowest layer).
        var root = SourceRoot();
        var files = Directory.GetFiles(root, "*.cs", SearchOption.AllDirectories)
            .Select(file => (Folder: TopFolder(root, file), File: file))
            .Where(f => f.Folder is not ("bin" or "obj"))
            .Select(f => (f.Folder, f.File, Code: StripCommentsAndStrings(File.ReadAllText(f.File))))
            .ToList();

        // A name declared in two folders (a private nested Slot or Sink) cannot be attributed and is left out.
        var declared = files
            .SelectMany(f => DeclarationPattern().Matches(f.Code).Select(m => (Name: m.Groups["name"].Value, f.Folder)))
            .Distinct()
            .GroupBy(d => d.Name)
            .Where(g => g.Count() == 1)
            .ToDictionary(g => g.Key, g => g.Single().Folder);

        var violations = new List<string>();
        foreach (var (folder, file, code) in files)
        {
            var layer = LayerOf(folder);
            foreach (var name in IdentifierPattern().Matches(code).Select(m => m.Value).Distinct())
            {
                if (!declared.TryGetValue(name, out var owner) || owner == folder)
                {
                    continue;
                }

                var ownerLayer = LayerOf(owner);
                if (ownerLayer > layer || (ownerLayer == layer && !s_layers[layer].FoldersUseEachOther))
                {
                    violations.Add($"{folder}/{Path.GetFileName(file)} uses {name} from {owner}/");
                }
            }
        }

        Assert.Empty(violations);
    }

    private const string RootFolder = "";

    private static int LayerOf(string folder) => Array.FindIndex(s_layers, l => l.Folders.Contains(folder));

    private static string TopFolder(string root, string file)
    {
        var relative = Path.GetRelativePath(root, file);
        var separator = relative.IndexOf(Path.DirectorySeparatorChar);
        return separator < 0 ? RootFolder : relative[..separator];
    }

    private static string SourceRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Sluice.slnx")))
        {
            directory = directory.Parent;
        }

        return Path.Combine(directory?.FullName ?? throw new InvalidOperationException("Sluice.slnx not found above the test's directory."), "src", "Sluice");
    }

    private static string StripCommentsAndStrings(string code) => CommentOrStringPattern().Replace(code, " ");

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/|""(?:\\.|[^""\\\n])*""|'(?:\\.|[^'\\])'", RegexOptions.Singleline)]
    private static partial Regex CommentOrStringPattern();

    [GeneratedRegex(@"\b(?:class|struct|interface|enum|record|delegate\s+\S+)\s+(?<name>[A-Z]\w*)")]
    private static partial Regex DeclarationPattern();

    [GeneratedRegex(@"\b[A-Z]\w*\b")]
    private static partial Regex IdentifierPattern();
}
