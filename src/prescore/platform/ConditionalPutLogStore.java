package prescore.delta;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FSDataOutputStreamBuilder;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.s3a.RemoteFileChangedException;

/**
 * Delta commits on S3 from any number of drivers, with no lock service: each commit file is
 * created with S3's conditional put (If-None-Match: *), so of two drivers writing the same
 * version one gets "precondition failed", which Delta treats as a concurrent commit (it checks
 * for conflicts, then retries or fails). Delta's own S3SingleDriverLogStore guards one JVM only.
 *
 * Needs a store that honours conditional puts (AWS S3 since 2024, MinIO, moto) and hadoop-aws
 * 3.4.2 or later. Enabled by prescore.platform.spark for s3a:// paths.
 */
public class ConditionalPutLogStore extends HadoopFileSystemLogStore {
  private static final String CONDITIONAL_PUT = "fs.option.create.conditional.overwrite";

  public ConditionalPutLogStore(Configuration hadoopConf) {
    super(hadoopConf);
  }

  @Override
  public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration conf)
      throws IOException {
    FileSystem fs = path.getFileSystem(conf);
    FSDataOutputStreamBuilder<?, ?> builder = fs.createFile(path).overwrite(overwrite);
    if (!overwrite) {
      builder.must(CONDITIONAL_PUT, true);
    }
    try (FSDataOutputStream out = builder.build()) {
      while (actions.hasNext()) {
        out.write((actions.next() + "\n").getBytes(StandardCharsets.UTF_8));
      }
    } catch (RemoteFileChangedException | org.apache.hadoop.fs.FileAlreadyExistsException e) {
      java.nio.file.FileAlreadyExistsException taken =
          new java.nio.file.FileAlreadyExistsException(path.toString());
      taken.initCause(e);
      throw taken;
    }
  }

  @Override
  public Boolean isPartialWriteVisible(Path path, Configuration conf) {
    return false; // an object appears whole when its upload completes, or not at all
  }
}
