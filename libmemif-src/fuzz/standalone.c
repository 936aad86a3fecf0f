/* SPDX-License-Identifier: Apache-2.0 */
/* standalone.c - run a fuzz target over files (regression runs without libFuzzer). */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
main (int argc, char **argv)
{
  for (int i = 1; i < argc; i++)
    {
      FILE *f = fopen (argv[i], "rb");
      if (f == NULL)
        {
          perror (argv[i]);
          return 1;
        }
      static uint8_t buf[1 << 20];
      size_t n = fread (buf, 1, sizeof (buf), f);
      fclose (f);
      LLVMFuzzerTestOneInput (buf, n);
    }
  printf ("ran %d inputs\n", argc - 1);
  return 0;
}
